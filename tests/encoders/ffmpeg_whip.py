#!/usr/bin/env python3
"""Publishes a generated test pattern + tone by WHIP with FFmpeg's own `whip` muxer (PyAV).

    ffmpeg_whip.py WHIP_URL TOKEN [SECONDS]

PyAV's wheels bundle FFmpeg 8, whose libavformat has the WHIP muxer (libavformat/whip.c).
This is what `ffmpeg -re -f lavfi -i testsrc2 -f lavfi -i sine -c:v libx264 -c:a libopus
-f whip -authorization TOKEN URL` does: lavfi `testsrc2` (640x360, 30 fps) and a 440 Hz
`sine`, encoded as H.264 (libx264, constrained baseline, no B-frames, a keyframe every
second) and Opus (48 kHz stereo, 20 ms frames), paced in real time. Exits 0 after SECONDS;
an error (e.g. a failed WHIP or DTLS handshake) raises and exits non-zero.
"""
import fractions
import sys
import time

import av

FPS, WIDTH, HEIGHT, RATE = 30, 640, 360, 48000


def main() -> int:
    url, token = sys.argv[1], sys.argv[2]
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 8.0

    vsrc = av.open(f"testsrc2=size={WIDTH}x{HEIGHT}:rate={FPS}", format="lavfi")
    asrc = av.open(f"sine=frequency=440:sample_rate={RATE}", format="lavfi")
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE, frame_size=960)

    out = av.open(url, "w", format="whip", options={"authorization": token})
    video = out.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.bit_rate = 1_000_000
    video.options = {"profile": "baseline", "tune": "zerolatency", "preset": "veryfast",
                     "g": str(FPS), "bf": "0"}
    audio = out.add_stream("libopus", rate=RATE)
    audio.layout = "stereo"
    audio.bit_rate = 64_000

    vframes = vsrc.decode(video=0)
    aframes = asrc.decode(audio=0)
    start = time.monotonic()
    n_video = n_audio = 0
    audio_samples = 0
    total = int(seconds * FPS)
    for n in range(total):
        frame = next(vframes).reformat(format="yuv420p")
        frame.pts, frame.time_base = n, fractions.Fraction(1, FPS)
        for packet in video.encode(frame):
            out.mux(packet)
        n_video += 1
        # Keep the audio clock up with the video clock.
        while audio_samples < (n + 1) * RATE // FPS:
            for chunk in resampler.resample(next(aframes)):
                chunk.pts, chunk.time_base = audio_samples, fractions.Fraction(1, RATE)
                audio_samples += chunk.samples
                for packet in audio.encode(chunk):
                    out.mux(packet)
                n_audio += 1
        delay = start + (n + 1) / FPS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    for packet in video.encode(None):
        out.mux(packet)
    for packet in audio.encode(None):
        out.mux(packet)
    out.close()
    print(f"published {n_video} video frames and {n_audio} audio frames", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
