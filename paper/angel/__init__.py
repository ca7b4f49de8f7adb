"""Angel One SmartAPI: REST, SmartWebSocketV2 and the order-update socket, binary packets, order bodies."""
