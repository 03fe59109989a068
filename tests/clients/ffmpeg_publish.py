"""FFmpeg's WHIP muxer (PyAV's bundled FFmpeg 8.1) publishing H.264 and Opus in real time.

    python ffmpeg_publish.py URL PROFILE SECONDS FPS OPTIONS_JSON

With no options it uses the muxer's defaults (it is the DTLS server, with its own self-signed
certificate). The encoder settings are those of FFmpeg's documented WHIP command, -bf 0 -tune
zerolatency (the muxer refuses B-frames; no look-ahead, so no frame is still in the encoder at
DELETE), with -profile:v baseline, or x264's default profile, High, as OBS sends it. Prints one
JSON line with the frames it encoded; exits nonzero if publishing failed.
"""

import fractions
import json
import sys
import time

import av

url, profile, seconds, fps = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
options = json.loads(sys.argv[5])  # none, unless a test says otherwise
out = av.open(url, "w", format="whip", options=options)
video = out.add_stream("libx264", rate=fps)
video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
video.options = {"bf": "0", "tune": "zerolatency", "g": str(fps)}
if profile == "baseline":
    video.options |= {"profile": "baseline"}
audio = out.add_stream("libopus", rate=48000)
audio.layout = "stereo"

SAMPLES = 960  # 20 ms
events = sorted(
    [(i / fps, "video", i) for i in range(seconds * fps)]
    + [(i * SAMPLES / 48000, "audio", i) for i in range(seconds * 48000 // SAMPLES)]
)
start = time.monotonic()
for at, kind, i in events:
    time.sleep(max(0.0, start + at - time.monotonic()))  # real time, like ffmpeg -re
    if kind == "video":
        frame = av.VideoFrame(video.width, video.height, "yuv420p")
        for plane, value in zip(frame.planes, ((16 + 7 * i) % 220, 128, 128), strict=True):
            plane.update(bytes([value]) * plane.buffer_size)
        frame.pts, frame.time_base = i, fractions.Fraction(1, fps)
        packets = video.encode(frame)
    else:
        frame = av.AudioFrame(format="s16", layout="stereo", samples=SAMPLES)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.sample_rate, frame.pts = 48000, i * SAMPLES
        frame.time_base = fractions.Fraction(1, 48000)
        packets = audio.encode(frame)
    out.mux(packets)
out.mux(video.encode(None) + audio.encode(None))
out.close()  # sends the DELETE
print(json.dumps({"video_frames": seconds * fps, "audio_frames": len(events) - seconds * fps}))
