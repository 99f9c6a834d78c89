"""Curation stages: pure cores on arrays plus thin wrappers around yt-dlp, ffmpeg, Demucs and CLIP."""
