"""Room state: who is in which room with which role, and the stream they share."""
