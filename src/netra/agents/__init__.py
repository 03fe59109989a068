"""Participant lifecycles, transport-neutral: a PublisherAgent and a ViewerAgent per client.

The arrow points adapters (signaling, http) → agents → rooms → media.
"""
