"""Many Netra processes as one server: the directory of origins, and the pulls between nodes."""
