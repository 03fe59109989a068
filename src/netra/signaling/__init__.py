"""The edge: WebSocket signaling, one SignalingSession per connection."""
