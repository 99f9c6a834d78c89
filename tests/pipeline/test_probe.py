"""probe(): what a file holds, and a readable StageError for files that hold nothing usable."""

from __future__ import annotations

import pytest

from pipeline.errors import StageError
from pipeline.media import ffprobe_json, run_ffmpeg
from pipeline.probe import MediaInfo, info_from_ffprobe, parse_rate, probe, require_streams


def test_probe_reads_streams_duration_and_fps(media_factory):
    path = media_factory("probe", duration_s=3.0, size="160x120", fps=30)
    info = probe(path)
    assert info.duration_s == pytest.approx(3.0, abs=0.05)
    assert info.has_video and info.has_audio
    assert info.fps == pytest.approx(30.0)
    assert (info.width, info.height) == (160, 120)
    assert info.audio_sample_rate == 44100 and info.audio_channels == 2
    require_streams(info, path)  # both present: no error


def test_fractional_frame_rate(tmp_path):
    path = tmp_path / "ntsc.mp4"
    run_ffmpeg(
        ["-f", "lavfi", "-i", "testsrc2=size=160x120:rate=30000/1001:duration=1", "-c:v", "libx264",
         "-preset", "ultrafast", str(path)],
        stage="test",
    )  # fmt: skip
    info = probe(path)
    assert info.fps == pytest.approx(30000 / 1001, abs=1e-6)
    assert not info.has_audio and info.audio_sample_rate is None


def test_corrupt_file_is_a_readable_probe_error(odd_media):
    with pytest.raises(StageError) as err:
        probe(odd_media["corrupt"])
    assert err.value.stage == "probe" and err.value.permanent
    assert str(err.value).startswith("probe: corrupt.mp4: not a readable media file (")


def test_zero_length_file(odd_media):
    with pytest.raises(StageError, match=r"^probe: empty\.mp4: file is empty \(0 bytes\)$"):
        probe(odd_media["empty"])


def test_missing_file(tmp_path):
    with pytest.raises(StageError, match="nope.mp4: file not found"):
        probe(tmp_path / "nope.mp4")


def test_no_audio_stream(odd_media):
    info = probe(odd_media["video_only"])
    assert info.has_video and not info.has_audio
    with pytest.raises(StageError, match=r"^probe: video_only\.mp4: no audio stream$"):
        require_streams(info, odd_media["video_only"])
    require_streams(info, odd_media["video_only"], audio=False)


def test_no_video_stream(odd_media):
    info = probe(odd_media["audio_only"])
    assert info.has_audio and not info.has_video and info.fps is None
    with pytest.raises(StageError, match=r"^probe: audio_only\.m4a: no video stream$"):
        require_streams(info, odd_media["audio_only"])
    require_streams(info, odd_media["audio_only"], video=False)


def test_real_recordings(shared_media):
    clip = probe(shared_media / "bikes_cuts_10s.mp4")
    assert clip.has_video and not clip.has_audio and clip.fps == 25.0
    assert clip.duration_s == pytest.approx(10.0, abs=0.05) and (clip.width, clip.height) == (640, 272)
    song = probe(shared_media / "kick_120bpm.mp3")
    assert song.has_audio and not song.has_video


def test_ffprobe_json_has_format_and_streams(media_factory):
    data = ffprobe_json(media_factory("probe", duration_s=3.0, size="160x120", fps=30))
    assert {s["codec_type"] for s in data["streams"]} == {"video", "audio"}
    assert float(data["format"]["duration"]) > 0


# ------------------------------------------------------------------------------------- pure parts


def test_parse_rate():
    assert parse_rate("30000/1001") == pytest.approx(29.97002997)
    assert parse_rate("25/1") == 25.0 and parse_rate("25") == 25.0
    for bad in ("0/0", "25/0", "", None, "abc", "-25/1"):
        assert parse_rate(bad) is None


def test_cover_art_is_not_a_video_stream():
    data = {
        "format": {"duration": "12.5"},
        "streams": [
            {"codec_type": "audio", "sample_rate": "44100", "channels": 2},
            {"codec_type": "video", "disposition": {"attached_pic": 1}, "width": 500, "height": 500},
        ],
    }
    info = info_from_ffprobe(data, "song.mp3")
    assert not info.has_video and info.width is None and info.duration_s == 12.5


def test_duration_falls_back_to_streams_and_zero_length_is_an_error():
    data = {"format": {}, "streams": [{"codec_type": "video", "duration": "4.0", "avg_frame_rate": "0/0",
                                       "r_frame_rate": "25/1"}]}  # fmt: skip
    info = info_from_ffprobe(data)
    assert info.duration_s == 4.0 and info.fps == 25.0
    with pytest.raises(StageError, match="zero-length"):
        info_from_ffprobe({"format": {"duration": "0.0"}, "streams": [{"codec_type": "audio"}]}, "x.wav")
    with pytest.raises(StageError, match="no audio or video stream"):
        info_from_ffprobe({"format": {"duration": "3"}, "streams": [{"codec_type": "data"}]}, "x.bin")


def test_media_info_is_validated():
    with pytest.raises(ValueError):
        MediaInfo(0.0, True, True, 25.0, 1, 1, 1, 1)
    with pytest.raises(ValueError):
        MediaInfo(1.0, True, True, 0.0, 1, 1, 1, 1)


# ------------------------------------------------------------------------------- ffmpeg wrapper


def test_run_ffmpeg_failure_carries_stage_and_ffmpeg_words(tmp_path):
    with pytest.raises(StageError) as err:
        run_ffmpeg(["-i", str(tmp_path / "missing.mp4"), str(tmp_path / "out.mp4")], stage="clip")
    assert err.value.stage == "clip" and err.value.permanent
    assert "No such file or directory" in str(err.value) and " @ 0x" not in str(err.value)
    assert not (tmp_path / "out.mp4").exists()


def test_run_ffmpeg_timeout_is_retryable(tmp_path):
    with pytest.raises(StageError, match="longer than 0.5 s") as err:
        run_ffmpeg(["-re", "-f", "lavfi", "-i", "sine", "-f", "null", "-"], stage="clip", timeout_s=0.5)
    assert err.value.permanent is False
