"""Sites that push back: which yt-dlp failures are site blocks (on yt-dlp's own error texts and exception
chains), a loopback site answering 429, and the site access options (cookies, proxy, sleep, KEY=VALUE)
reaching yt-dlp and lineage without their secrets."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from pipeline.download import (
    ACCESS_KEY,
    BOT_CHECK,
    RATE_LIMIT,
    DownloadOptions,
    SiteBlocked,
    _access_params,
    browser_spec,
    classify,
    download,
    parse_ytdlp_option,
    proxy_without_credentials,
    scrub_secrets,
    site_block,
)
from pipeline.errors import StageError
from pipeline.urls import site_of

SHORT_OK = DownloadOptions(min_duration_s=1.0, max_duration_s=600.0, retries=0, socket_timeout_s=5.0)


def _youtube_style_failure(reason_of) -> BaseException:  # noqa: ANN001 - a function of the extractor
    """The exception a real YoutubeDL raises when an extractor gives up the way yt-dlp's YouTube extractor
    does (its own message-building code: the login hint, raise_no_formats), through extract_info's wrapping."""
    import yt_dlp
    from yt_dlp.extractor.youtube import YoutubeIE

    class Blocked(YoutubeIE):
        _VALID_URL = r"blocked:(?P<id>.+)"
        IE_NAME = "blocked"

        def _real_extract(self, url):  # noqa: ANN001, ANN202
            self.raise_no_formats(reason_of(self), expected=True, video_id=self._match_id(url))

    params = {"quiet": True, "no_warnings": True, "noprogress": True}
    with yt_dlp.YoutubeDL(params, auto_init=False) as ydl:  # only this extractor: no generic fallback
        ydl.add_info_extractor(Blocked(ydl))
        with pytest.raises(yt_dlp.utils.DownloadError) as got:
            ydl.extract_info("blocked:dQw4w9WgXcQ", download=False)
    return got.value


# The reasons as YouTube sends them and yt-dlp's youtube/_video.py finishes them (see its playability code).
def _bot_check(ie) -> str:  # noqa: ANN001
    return f"Sign in to confirm you’re not a bot. {ie._youtube_login_hint}"


def _rate_limited(ie) -> str:  # noqa: ANN001
    return ("This content isn't available, try again later. The current session has been rate-limited by YouTube "
            "for up to an hour. It is recommended to use `-t sleep` to add a delay between video requests")


def _captcha(ie) -> str:  # noqa: ANN001
    return "Something went wrong. YouTube is requiring a captcha challenge before playback"


def _unavailable(ie) -> str:  # noqa: ANN001
    return "Video unavailable. This video has been removed by the uploader"


def _private(ie) -> str:  # noqa: ANN001
    return f"Private video. Sign in if you've been granted access to this video. {ie._youtube_login_hint}"


@pytest.mark.parametrize("reason, kind", [(_bot_check, BOT_CHECK), (_rate_limited, RATE_LIMIT),
                                          (_captcha, BOT_CHECK), (_unavailable, None), (_private, None)])
def test_site_blocks_are_told_from_failures_of_the_video_on_yt_dlps_own_errors(reason, kind):
    err = _youtube_style_failure(reason)
    url = "https://www.youtube.com/watch?v=dQw4w9WgXcQ"
    blocked = site_block(err, url)
    if kind is None:  # a removed or private video is that video's failure, permanent, not a block
        assert blocked is None
        message, permanent = classify(err, url)
        assert permanent and "dQw4w9WgXcQ" in message
        return
    assert isinstance(blocked, SiteBlocked) and blocked.kind == kind and blocked.site == "youtube"
    assert not blocked.permanent and blocked.stage == "download"
    assert url in str(blocked)


def test_a_loopback_site_answering_429_is_a_block_with_its_retry_after(http_server, tmp_path):
    url = http_server.url("limited/clip.mp4")
    with pytest.raises(SiteBlocked) as got:
        download(url, tmp_path / "sources", SHORT_OK)
    err = got.value
    assert err.kind == RATE_LIMIT and err.site == f"127.0.0.1:{http_server.port}" and err.retry_after_s == 120
    assert "HTTP Error 429" in str(err) and not err.permanent
    assert [p for p in (tmp_path / "sources").iterdir() if p.name.startswith(".dl-")] == []  # nothing left over
    # a 503 is an ordinary transient failure, not a block
    with pytest.raises(StageError) as busy:
        download(http_server.url("busy.mp4"), tmp_path / "sources", SHORT_OK)
    assert not isinstance(busy.value, SiteBlocked)


def test_site_of_names_known_sites_searches_and_hosts_with_ports():
    assert site_of("https://www.youtube.com/watch?v=x") == site_of("https://youtu.be/x") == "youtube"
    assert site_of("ytsearch10:city video guide") == "youtube"
    assert site_of("https://player.vimeo.com/video/1") == "vimeo"
    assert site_of("http://127.0.0.1:8123/a.mp4") == "127.0.0.1:8123"
    assert site_of("https://www.example.org/v.mp4") == "example.org"


def test_cookies_reach_the_site_and_stay_out_of_info_json_and_lineage(http_server, media_factory, tmp_path):
    """A real cookies file: yt-dlp sends it to the site; what is kept (info.json, its access record) names
    that cookies were used, never their value."""
    src = media_factory("ck", duration_s=3.0, size="160x120", fps=25, cut_every_s=1.0)
    shutil.copy(src, http_server.root / "sample.mp4")
    cookies = tmp_path / "cookies.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n"
                       "127.0.0.1\tFALSE\t/\tFALSE\t0\tSID\tsecret-session-value-123\n")
    opts = DownloadOptions(min_duration_s=1.0, retries=0, socket_timeout_s=5.0, cookies_file=str(cookies),
                           sleep_requests_s=0.0, ytdlp_options=(("http_headers", {"X-Api-Key": "k-999"}),))
    got = download(http_server.url("sample.mp4"), tmp_path / "sources", opts)
    sent = [h.get("Cookie", "") for h in http_server.headers]
    assert any("SID=secret-session-value-123" in c for c in sent), sent
    assert any(h.get("X-Api-Key") == "k-999" for h in http_server.headers)  # the yt-dlp option reached it
    text = got.info_json_path.read_text()
    assert "secret-session-value-123" not in text and "k-999" not in text and str(cookies) not in text
    access = json.loads(text)[ACCESS_KEY]
    assert access == {"cookies": "file", "sleep_requests_s": 0.0, "ytdlp_options": {"http_headers": "<redacted>"}}


def test_access_options_become_yt_dlp_parameters_and_a_record_without_secrets(tmp_path):
    cookies = tmp_path / "c.txt"
    cookies.write_text("# Netscape HTTP Cookie File\n")
    opts = DownloadOptions(cookies_file=str(cookies), cookies_from_browser="chrome+gnomekeyring:Profile 1",
                           proxy="socks5://alice:pw@proxy.example:1080", sleep_requests_s=1.5,
                           ytdlp_options=(parse_ytdlp_option("extractor_args=youtube:po_token=web.gvs+TOK;"
                                                             "player_client=web,mweb"),
                                          parse_ytdlp_option("ratelimit=500000")))
    params = _access_params(opts)
    assert params == {"cookiefile": str(cookies), "cookiesfrombrowser": ("chrome", "Profile 1", "GNOMEKEYRING", None),
                      "proxy": "socks5://alice:pw@proxy.example:1080", "sleep_interval_requests": 1.5,
                      "extractor_args": {"youtube": {"po_token": ["web.gvs+TOK"], "player_client": ["web", "mweb"]}},
                      "ratelimit": 500000}
    record = json.dumps(opts.access_record())
    for secret in ("alice", "pw@", "TOK", str(cookies), "Profile 1"):
        assert secret not in record, (secret, record)
    assert opts.access_record() == {
        "cookies": "file", "cookies_from_browser": "chrome", "proxy": "socks5://proxy.example:1080",
        "sleep_requests_s": 1.5, "ytdlp_options": {"extractor_args": {"youtube": {"po_token": "<redacted>",
                                                                   "player_client": ["web", "mweb"]}},
                                    "ratelimit": 500000}}


def test_bad_access_options_are_refused_with_what_to_do(tmp_path):
    with pytest.raises(ValueError, match="cookies file .* not found"):
        DownloadOptions(cookies_file=str(tmp_path / "missing.txt"))
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_ytdlp_option("no-equals-sign")
    with pytest.raises(ValueError, match="IE:ARG=VALUE"):
        parse_ytdlp_option("extractor_args=po_token")
    with pytest.raises(ValueError, match="set by vidmusician itself"):
        DownloadOptions(ytdlp_options=(("outtmpl", "x"),))
    with pytest.raises(ValueError, match=">= 0 seconds"):
        DownloadOptions(sleep_requests_s=-1.0)
    assert browser_spec("firefox") == ("firefox", None, None, None)
    assert browser_spec("firefox:default-release::Work") == ("firefox", "default-release", None, "Work")
    assert proxy_without_credentials("http://u:p@10.0.0.1:3128") == "http://10.0.0.1:3128"


def test_scrub_secrets_drops_cookies_and_auth_headers_everywhere():
    info = {"id": "x", "http_headers": {"Cookie": "a=b", "User-Agent": "ua"},
            "formats": [{"url": "u", "cookies": "SID=1; Domain=.youtube.com",
                         "http_headers": {"Authorization": "Bearer t", "Accept": "*/*"}}]}
    clean = scrub_secrets(info)
    assert clean == {"id": "x", "http_headers": {"User-Agent": "ua"},
                     "formats": [{"url": "u", "http_headers": {"Accept": "*/*"}}]}
    assert info["formats"][0]["cookies"]  # the input is left as it was


def test_site_blocked_survives_pickling_with_its_fields():
    import pickle

    err = pickle.loads(pickle.dumps(SiteBlocked("youtube", BOT_CHECK, "the site asks", 30.0)))
    assert (err.site, err.kind, err.retry_after_s, str(err).endswith("the site asks")) == \
        ("youtube", BOT_CHECK, 30.0, True)


def test_env_gives_workers_their_site_access(tmp_path):
    from flows.config import SITE_ACCESS_ENV, CurateConfig, site_access_from_env

    env = {SITE_ACCESS_ENV["proxy"]: "http://10.1.1.1:3128", SITE_ACCESS_ENV["sleep_requests_s"]: "2",
           SITE_ACCESS_ENV["ytdlp_options"]: "extractor_args=youtube:player_client=web\nratelimit=1000\n"}
    got = site_access_from_env(env)
    assert got == {"proxy": "http://10.1.1.1:3128", "sleep_requests_s": 2.0,
                   "ytdlp_options": (("extractor_args", {"youtube": {"player_client": ["web"]}}),
                                     ("ratelimit", 1000))}
    with pytest.raises(ValueError, match="expected seconds"):
        site_access_from_env({SITE_ACCESS_ENV["sleep_requests_s"]: "soon"})
    assert site_access_from_env({}) == {}
    proxy_var = SITE_ACCESS_ENV["proxy"]
    assert CurateConfig(separator="none").download_options().proxy == os.environ.get(proxy_var)


def test_http_429_from_a_site_is_a_block_not_a_failed_http_4xx():
    """The chain a 429 takes through yt-dlp (its HTTPError as the cause of an ExtractorError)."""
    import io

    from yt_dlp.networking import Response
    from yt_dlp.networking.exceptions import HTTPError
    from yt_dlp.utils import ExtractorError

    response = Response(io.BytesIO(b""), "https://www.youtube.com/watch?v=abc", {"Retry-After": "Wed, 21 Oct 2026"},
                        status=429, reason="Too Many Requests")
    try:
        try:
            raise HTTPError(response)
        except HTTPError as http:
            raise ExtractorError("Unable to download webpage", cause=http) from http
    except ExtractorError as err:
        blocked = site_block(err, "https://www.youtube.com/watch?v=abc")
    assert blocked is not None and blocked.kind == RATE_LIMIT and blocked.retry_after_s is None  # a date: back-off
