"""The media layer: Peers, Publications, Subscriptions and the packet Forwarder.

Nothing here imports signaling or rooms; the arrow points signaling → rooms → media.
"""
