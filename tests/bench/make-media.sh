#!/usr/bin/env bash
# Regenerates the 720p benchmark clip committed as tests/media/clip-720p.h264:
# 1280x720 30 fps, H.264 constrained baseline, ~1.5 Mbit/s, 2 s GOP (IDR every 60 frames),
# SPS/PPS repeated before every IDR, one slice per frame, Annex B — what a browser's
# encoder sends, and what `tests/src/clip.rs` splits into access units. The audio clip
# (tests/media/clip.ogg, Opus in Ogg with 20 ms pages) is shared with the 360p clip.
#
#   ./tests/bench/make-media.sh            writes tests/media/clip-720p.h264
set -euo pipefail
cd "$(dirname "$0")/../media"
ffmpeg -hide_banner -loglevel error -y \
  -f lavfi -i "testsrc2=size=1280x720:rate=30" -t 6 \
  -pix_fmt yuv420p -c:v libx264 -profile:v baseline -preset veryfast \
  -b:v 1500k -maxrate 1500k -bufsize 1500k \
  -g 60 -keyint_min 60 -sc_threshold 0 -bf 0 -threads 1 \
  -x264-params repeat-headers=1:sliced-threads=0:slices=1:rc-lookahead=0 \
  -f h264 clip-720p.h264
ls -l clip-720p.h264
