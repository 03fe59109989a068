"""`netra bench`: a load tool that measures how many viewers a server carries.

A synthetic publisher loops a pre-encoded 720p30 clip; viewer bots count what arrives without
decoding; a ladder adds viewers in steps and measures the server from /proc. The same
publisher and bots drive Netra or Janus's VideoRoom through a `Target` (see target.py).
"""
