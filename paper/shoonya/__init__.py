"""Finvasia Shoonya (Noren OMS): REST, the NorenWSTP socket, order bodies."""
