"""HTTP doors: WHIP ingest, WHEP playback, and the admin API, as adapters over the agents."""
