"""Static data of the paper broker (the Kite mock repository instrument rows)."""
