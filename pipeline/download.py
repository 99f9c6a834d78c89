"""Find and fetch sources with yt-dlp (its Python API): ``ytsearchN:query`` hits and plain URLs.

Layout: ``download(url, sources_dir, opts)`` writes ``sources_dir/{id}/source.{ext}`` and
``sources_dir/{id}/info.json`` (yt-dlp's info dict plus a ``"vidmusician"`` entry) and remembers
the URL in ``sources_dir/.by-url/{url_key(url)}``, so a second call for the same URL returns the
finished download without touching the network. Work happens in a temporary folder in
``sources_dir``; media and info.json land only when complete, info.json last.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dvmset.layout import check_id
from pipeline.errors import NO_ROOM, StageError, disk_full
from pipeline.probe import probe
from pipeline.site_access import (
    browser_spec,
    parse_ytdlp_option,
    proxy_without_credentials,
    redact,
    scrub_secrets,
)
from pipeline.source_files import (
    MEDIA_STEM,
    Downloaded,
    commit,
    find_downloaded,
    finite_number,
    load_downloaded,
    remember,
    source_lock,
    sweep_stale_workdirs,
    url_key,
    work_folder,
)
from pipeline.urls import PrivateUrlRefused, private_url_problem, site_of

log = logging.getLogger(__name__)

STAGE = "download"
ACCESS_KEY = "vidmusician_access"  # in info.json: DownloadOptions.access_record() of the download
__all__ = ["Downloaded", "DownloadOptions", "Entry", "SiteBlocked", "browser_spec", "download", "find_downloaded",
           "parse_ytdlp_option", "proxy_without_credentials", "redact", "scrub_secrets", "search", "source_lock",
           "sweep_stale_workdirs", "url_key"]  # site access helpers live in pipeline.site_access  # the on-disk parts live in pipeline.source_files


@dataclass(frozen=True)
class DownloadOptions:
    """Filters and network settings for yt-dlp.

    ``retries`` is handed to yt-dlp (HTTP, fragment and extractor retries inside one call); the
    flow adds its own retries with back-off for non-permanent errors. ``public_only`` (URLs from a
    release) refuses any request to a loopback, private or link-local address (pipeline.urls). ``js_runtimes`` are the
    JavaScript runtimes yt-dlp may use for YouTube's player code (with the ``yt-dlp-ejs`` package).
    """

    min_duration_s: float = 60.0
    max_duration_s: float | None = 1800.0
    retries: int = 3
    socket_timeout_s: float = 20.0
    format: str = "bv*[height<=720]+ba/b[height<=720]/b"
    js_runtimes: tuple[str, ...] = ("deno", "node")
    public_only: bool = False  # every request (page, media, redirect target) to a public host only
    # how to get past a site that pushes back (yt-dlp's --cookies, --cookies-from-browser, --proxy,
    # --sleep-requests; ``ytdlp_options``: (yt-dlp API parameter, value) pairs, e.g. extractor_args)
    cookies_file: str | None = None
    cookies_from_browser: str | None = None  # BROWSER[+KEYRING][:PROFILE][::CONTAINER], as yt-dlp takes it
    proxy: str | None = None
    sleep_requests_s: float | None = None
    ytdlp_options: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        if not math.isfinite(self.min_duration_s) or self.min_duration_s < 0:
            raise ValueError(f"min_duration_s must be >= 0, got {self.min_duration_s}")
        if self.max_duration_s is not None and not (
            math.isfinite(self.max_duration_s) and self.max_duration_s > self.min_duration_s
        ):
            raise ValueError(
                f"max_duration_s must be None or above min_duration_s ({self.min_duration_s}), "
                f"got {self.max_duration_s}"
            )
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"retries must be an integer >= 0, got {self.retries!r}")
        if not math.isfinite(self.socket_timeout_s) or self.socket_timeout_s <= 0:
            raise ValueError(f"socket_timeout_s must be > 0, got {self.socket_timeout_s}")
        if not self.format.strip():
            raise ValueError("format must be a yt-dlp format selector such as 'b'")
        if self.sleep_requests_s is not None and not (math.isfinite(self.sleep_requests_s)
                                                      and self.sleep_requests_s >= 0):
            raise ValueError(f"sleep between requests must be >= 0 seconds, got {self.sleep_requests_s}")
        if self.cookies_file is not None and not Path(self.cookies_file).is_file():
            raise ValueError(f"cookies file {self.cookies_file} not found: export it from a browser logged in to "
                             "the site (Netscape format), or use --cookies-from-browser")
        for key, _ in self.ytdlp_options:
            if key in _OWN_PARAMS:
                raise ValueError(f"yt-dlp option {key!r} is set by vidmusician itself (its download layout); "
                                 "choose another")
        unknown = set(self.js_runtimes) - {"deno", "node", "bun", "quickjs"}
        if unknown:
            raise ValueError(
                f"unknown JavaScript runtime(s) {sorted(unknown)}: use deno, node, bun or quickjs"
            )


    def access_record(self) -> dict[str, Any]:
        """What lineage records of how the site was reached, never a secret: whether a cookies file was
        used (not its path or contents), the browser's name, the proxy without credentials, the sleep,
        the yt-dlp options with secret-looking values replaced by "<redacted>"."""
        out: dict[str, Any] = {}
        if self.cookies_file is not None:
            out["cookies"] = "file"
        if self.cookies_from_browser is not None:
            out["cookies_from_browser"] = re.split(r"[+:]", self.cookies_from_browser, maxsplit=1)[0]
        if self.proxy is not None:
            out["proxy"] = proxy_without_credentials(self.proxy)
        if self.sleep_requests_s is not None:
            out["sleep_requests_s"] = self.sleep_requests_s
        if self.ytdlp_options:
            out["ytdlp_options"] = {k: redact(k, v) for k, v in self.ytdlp_options}
        return out


#: yt-dlp parameters the download layout depends on: not overridable by --yt-dlp-option.
_OWN_PARAMS = frozenset({"outtmpl", "paths", "logger", "noplaylist", "overwrites", "merge_output_format",
                         "cachedir", "quiet", "noprogress"})

@dataclass(frozen=True)
class Entry:
    """A search hit, not yet downloaded."""

    id: str
    url: str
    title: str | None
    duration_s: float | None


class SiteBlocked(StageError):
    """The site refused a bulk downloader (a bot check, HTTP 429): no fault of the source, which stays
    pending; the caller pauses the site's downloads (dvmset.site_blocks). ``retry_after_s``: the wait the
    site asked for in a Retry-After header, when it gave one."""

    def __init__(self, site: str, kind: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(STAGE, message, permanent=False)
        self.site, self.kind, self.retry_after_s = site, kind, retry_after_s

    def __reduce__(self):  # noqa: ANN204 - travels between processes (Dask) with its fields
        return (type(self), (self.site, self.kind, self.args[1] if len(self.args) > 1 else str(self),
                             self.retry_after_s))


BOT_CHECK, RATE_LIMIT = "bot check", "HTTP 429"

#: What sites answer a bulk downloader with, as yt-dlp reports it (lower case; YouTube writes "you’re"
#: with a typographic apostrophe, yt-dlp's own messages an ASCII one).
_BOT_CHECK_TEXTS = ("confirm you’re not a bot", "confirm you're not a bot", "confirm that you're not a bot",
                    "confirm you are not a bot", "requiring a captcha challenge")
_RATE_LIMIT_TEXTS = ("http error 429", "too many requests", "session has been rate-limited",
                     "rate-limited by youtube")


# ---------------------------------------------------------------------------------------- pure parts


def search_query(query: str, n: int) -> str:
    """The yt-dlp search URL for the first ``n`` YouTube hits of ``query``."""
    query = " ".join(query.split())
    if not query:
        raise ValueError("search query is empty")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"number of search hits must be a positive integer, got {n!r}")
    return f"ytsearch{n}:{query}"


def duration_problem(duration_s: float | None, opts: DownloadOptions) -> str | None:
    """Why a source of ``duration_s`` is refused by the min/max filters, or None (unknown passes)."""
    if duration_s is None:
        return None
    if duration_s < opts.min_duration_s:
        return f"source is {duration_s:.1f} s, shorter than the {opts.min_duration_s:g} s minimum"
    if opts.max_duration_s is not None and duration_s > opts.max_duration_s:
        return f"source is {duration_s:.1f} s, longer than the {opts.max_duration_s:g} s maximum"
    return None


def safe_id(raw: str) -> str:
    """yt-dlp's id when it is a safe folder name (YouTube's are); else a cleaned id plus a hash."""
    raw = str(raw)
    try:
        return check_id(raw, "video id")
    except ValueError:
        cleaned = re.sub(r"[^A-Za-z0-9_-]+", "_", raw).strip("_")[:80] or "id"
        return f"{cleaned}-{hashlib.sha1(raw.encode('utf-8')).hexdigest()[:8]}"


def source_id(info: dict[str, Any], url: str) -> str:
    """The folder id of an extracted video: yt-dlp's id for site extractors (YouTube's are canonical).

    The generic extractor names a direct file by its file name, which two hosts can share
    (``video.mp4``), so its id gets a hash of the page URL: different files never share a folder.
    """
    raw = str(info.get("id") or "") or url_key(url)
    if info.get("extractor_key") != "Generic":
        return safe_id(raw)
    page = str(info.get("webpage_url") or url)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", raw).strip("_")[:80] or "video"
    return f"{stem}-{hashlib.sha1(page.encode('utf-8')).hexdigest()[:8]}"


def entries_from_search(result: dict[str, Any], opts: DownloadOptions) -> list[Entry]:
    """Turn yt-dlp's flat search result into entries, dropping hits whose known duration fails the filters."""
    out: list[Entry] = []
    for raw in result.get("entries") or []:
        if not raw or not raw.get("id"):
            continue
        duration = raw.get("duration")
        duration = float(duration) if isinstance(duration, int | float) else None
        if (why := duration_problem(duration, opts)) is not None:
            log.info("search hit %s skipped: %s", raw["id"], why)
            continue
        url = raw.get("webpage_url") or raw.get("url") or raw["id"]
        out.append(Entry(id=safe_id(raw["id"]), url=url, title=raw.get("title"), duration_s=duration))
    return out


# ---------------------------------------------------------------------------------- yt-dlp wrapper


class _Logger:
    """Routes yt-dlp's messages to ``logging``; its errors come back as exceptions, so they go to debug."""

    debug = info = error = staticmethod(lambda msg: log.debug("yt-dlp: %s", msg))
    warning = staticmethod(lambda msg: log.warning("yt-dlp: %s", msg))


def _ydl_params(opts: DownloadOptions, workdir: Path | None = None, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {
        "quiet": True,
        "no_warnings": False,
        "noprogress": True,
        "no_color": True,
        "logger": _Logger(),
        "cachedir": False,
        "noplaylist": True,
        "socket_timeout": opts.socket_timeout_s,
        "retries": opts.retries,
        "fragment_retries": opts.retries,
        "extractor_retries": opts.retries,
        "format": opts.format,
        "js_runtimes": {name: {} for name in opts.js_runtimes},
        "merge_output_format": "mp4/mkv",
        "outtmpl": f"{MEDIA_STEM}.%(ext)s",
        "overwrites": True,
        "updatetime": False,
    }
    if workdir is not None:
        params["paths"] = {"home": str(workdir), "temp": str(workdir)}
    params.update(_access_params(opts))
    params.update(extra)
    return params


def _access_params(opts: DownloadOptions) -> dict[str, Any]:
    """yt-dlp's API parameters for the cookies, proxy, sleep and extra options of ``opts``."""
    out: dict[str, Any] = {}
    if opts.cookies_file is not None:
        out["cookiefile"] = opts.cookies_file
    if opts.cookies_from_browser is not None:
        out["cookiesfrombrowser"] = browser_spec(opts.cookies_from_browser)
    if opts.proxy is not None:
        out["proxy"] = opts.proxy
    if opts.sleep_requests_s is not None:
        out["sleep_interval_requests"] = opts.sleep_requests_s
    for key, value in opts.ytdlp_options:
        out[key] = value
    return out




def _chain(err: BaseException) -> list[BaseException]:
    """``err`` and every exception behind it (yt-dlp's ``exc_info``/``cause``, Python's ``__cause__``)."""
    seen: list[BaseException] = []
    todo: list[Any] = [err]
    while todo and len(seen) < 20:
        cur = todo.pop(0)
        if not isinstance(cur, BaseException) or any(cur is s for s in seen):
            continue
        seen.append(cur)
        exc_info = getattr(cur, "exc_info", None)
        if isinstance(exc_info, tuple) and len(exc_info) > 1:
            todo.append(exc_info[1])
        todo += [getattr(cur, "cause", None), cur.__cause__, cur.__context__, *getattr(cur, "args", ())]
    return seen


def _host(url: str) -> str:
    return urlsplit(url).netloc or url


def _retry_after(value: object) -> float | None:
    """Seconds from a Retry-After header given in seconds (an HTTP date is ignored: the back-off applies)."""
    try:
        seconds = float(str(value).strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def site_block(err: BaseException, url: str) -> SiteBlocked | None:
    """The site block behind a yt-dlp failure (a bot check or an HTTP 429 anywhere in its chain), or None."""
    from yt_dlp.networking.exceptions import HTTPError

    chain = _chain(err)
    for e in chain:
        if isinstance(e, HTTPError) and e.status == 429:
            headers = getattr(e.response, "headers", None) or {}
            wait = _retry_after(headers.get("Retry-After")) if hasattr(headers, "get") else None
            where = getattr(e.response, "url", None) or url
            return SiteBlocked(site_of(url), RATE_LIMIT, f"HTTP Error 429: Too Many Requests for {where}", wait)
    text = " ".join(str(e) for e in chain).lower()
    first = re.sub(r"^ERROR:\s*", "", str(err)).strip().splitlines()[0] if str(err).strip() else ""
    if any(t in text for t in _BOT_CHECK_TEXTS):
        return SiteBlocked(site_of(url), BOT_CHECK, f"the site asks to confirm this is not a bot: {first} ({url})")
    if any(t in text for t in _RATE_LIMIT_TEXTS):
        return SiteBlocked(site_of(url), RATE_LIMIT, f"the site rate-limits this downloader: {first} ({url})")
    return None


def classify(err: BaseException, url: str) -> tuple[str, bool]:
    """A readable reason for a yt-dlp failure, and whether it is permanent (a retry cannot help)."""
    from yt_dlp.networking.exceptions import CertificateVerifyError, HTTPError, TransportError
    from yt_dlp.utils import ContentTooShortError, ExtractorError, UnsupportedError

    chain = _chain(err)
    text = " ".join(str(e) for e in chain).lower()
    for e in chain:
        if isinstance(e, HTTPError):
            where = getattr(e.response, "url", None) or url
            permanent = 400 <= e.status < 500 and e.status not in (408, 425, 429)
            return f"HTTP Error {e.status}: {e.reason} for {where}", permanent
    for e in chain:
        if isinstance(e, UnsupportedError):
            return f"unsupported URL (no extractor and no video found on the page): {url}", True
        if isinstance(e, CertificateVerifyError):
            return f"TLS certificate check failed for {_host(url)}: {e}", True
    for e in chain:
        if isinstance(e, TransportError | ContentTooShortError | ConnectionError | TimeoutError):
            if any(isinstance(c, ConnectionRefusedError) for c in chain) or "connection refused" in text:
                why = "connection refused"
            elif any(isinstance(c, TimeoutError) for c in chain) or "timed out" in text:
                why = "timed out"
            elif "name or service not known" in text or "resolve" in text or "getaddrinfo" in text:
                why = "host name not resolved"
            elif isinstance(e, ContentTooShortError):
                why = "the transfer stopped before the end of the file"
            else:
                why = str(e).strip() or type(e).__name__
            return f"cannot reach host {_host(url)} ({why}) for {url}", False
    for e in chain:
        if isinstance(e, ExtractorError):
            reason = re.sub(r"^ERROR:\s*", "", getattr(e, "orig_msg", None) or str(e)).strip()
            return f"{reason} ({url})", True
    message = re.sub(r"^ERROR:\s*", "", str(err)).strip() or type(err).__name__
    return f"{message} ({url})", False


def _fail(err: BaseException, url: str, workdir: Path | None = None) -> StageError:
    for e in _chain(err):
        if isinstance(e, PrivateUrlRefused):
            return e
        # a full disk stops the run (pipeline.errors), it is no fault of this video
        if isinstance(e, OSError) and e.errno in NO_ROOM:
            return disk_full(STAGE, e.filename or (workdir or Path.cwd()) / "download", e.strerror or str(e))
        if "No space left on device" in str(e):  # yt-dlp's own message, the OSError gone
            return disk_full(STAGE, (workdir or Path.cwd()) / "download", "No space left on device")
    if (blocked := site_block(err, url)) is not None:
        return blocked
    message, permanent = classify(err, url)
    return StageError(STAGE, message, permanent=permanent)


def _ydl(opts: DownloadOptions, params: dict[str, Any]):  # noqa: ANN202 - a yt_dlp.YoutubeDL
    import yt_dlp

    class Guarded(yt_dlp.YoutubeDL):
        """yt-dlp with two guards: with ``public_only`` every request (extractor pages, the media, the end
        of a redirect) goes to a public host; :meth:`close_responses` ends what extraction left open (the
        generic extractor opens a direct file link to sniff it, and an open response keeps the transfer
        going: without it a file crosses the network twice)."""

        def __init__(self, params: dict[str, Any]) -> None:
            super().__init__(params)
            self.responses: list = []

        def urlopen(self, req):  # noqa: ANN001, ANN202
            if opts.public_only and (why := private_url_problem(req if isinstance(req, str) else req.url)):
                raise PrivateUrlRefused(why)
            response = super().urlopen(req)
            if opts.public_only and (why := private_url_problem(response.url)):  # redirected
                response.close()
                raise PrivateUrlRefused(f"redirected to {why}")
            self.responses.append(response)
            return response

        def close_responses(self) -> None:
            for r in self.responses:
                r.close()
            self.responses.clear()

    return Guarded(params)


def search(query: str, n: int, opts: DownloadOptions) -> list[Entry]:
    """The first ``n`` YouTube hits for ``query`` (flat: nothing downloaded), filtered by duration when known."""
    import yt_dlp

    target = search_query(query, n)
    try:
        with yt_dlp.YoutubeDL(_ydl_params(opts, extract_flat="in_playlist")) as ydl:
            result = ydl.extract_info(target, download=False)
    except yt_dlp.utils.YoutubeDLError as err:
        raise _fail(err, target) from err
    return entries_from_search(result or {}, opts)


def download(url: str, sources_dir: Path, opts: DownloadOptions, expect_id: str | None = None) -> Downloaded:
    """Download ``url`` into ``sources_dir/{id}/`` (``source.{ext}`` + ``info.json``) and return it.

    Idempotent: a URL (or an id) already complete on disk is returned as is. Duration filters are
    applied before downloading when the site reports a duration, else on the probed file.
    Raises ``StageError("download", reason, permanent=...)``: permanent for HTTP 4xx, unsupported
    URLs, too short or too long sources; not permanent for connection errors and timeouts.
    ``expect_id``: the video the caller was promised (a release row); a URL that now gives another one
    is refused before its media is fetched.
    """
    import yt_dlp

    sources_dir = Path(sources_dir)
    if opts.public_only and (why := private_url_problem(url)):
        raise PrivateUrlRefused(why)
    if (done := find_downloaded(url, sources_dir)) is not None and expect_id in (None, done.id):
        log.debug("already downloaded: %s -> %s", url, done.id)
        return done
    sources_dir.mkdir(parents=True, exist_ok=True)
    sweep_stale_workdirs(sources_dir)
    with work_folder(sources_dir, url) as workdir, _ydl(opts, _ydl_params(opts, workdir)) as ydl:
        try:
            info = ydl.extract_info(url, download=False)
        except yt_dlp.utils.YoutubeDLError as err:
            raise _fail(err, url) from err
        finally:
            ydl.close_responses()
        if not info:
            raise StageError(STAGE, f"yt-dlp found nothing at {url}")
        if info.get("_type") in ("playlist", "multi_video"):
            raise StageError(STAGE, f"{url} is a playlist: pass the URLs of single videos")
        vid = source_id(info, url)
        if expect_id is not None and vid != expect_id:
            raise StageError(STAGE, f"the URL now gives video {vid}, not {expect_id} (its media not fetched)")
        if opts.public_only:  # what a downloader outside yt-dlp's requests (ffmpeg) would fetch
            for f in info.get("requested_formats") or [info]:
                if isinstance(f.get("url"), str) and (why := private_url_problem(f["url"])):
                    raise PrivateUrlRefused(f"its media is at {why}")
        # Another worker (this run or another) may hold the video: wait, then use what it finished.
        with source_lock(sources_dir, vid):
            if (done := load_downloaded(sources_dir / vid)) is not None:
                remember(sources_dir, url, vid)
                return done
            if (why := duration_problem(finite_number(info.get("duration")), opts)) is not None:
                raise StageError(STAGE, why)
            try:
                result = ydl.process_ie_result(info, download=True)
            except yt_dlp.utils.YoutubeDLError as err:
                raise _fail(err, url, workdir) from err
            got = _downloaded_file(result, workdir)
            duration = probe(got).duration_s
            if (why := duration_problem(duration, opts)) is not None:
                raise StageError(STAGE, why)
            info = scrub_secrets(ydl.sanitize_info(result))
            info[ACCESS_KEY] = opts.access_record()  # how the site was reached, for lineage (no secrets)
            return commit(sources_dir, vid, got, info, url, duration)


def _downloaded_file(result: dict[str, Any], workdir: Path) -> Path:
    for item in result.get("requested_downloads") or []:
        path = Path(item.get("filepath") or "")
        if path.is_file():
            return path
    found = [p for p in workdir.glob(f"{MEDIA_STEM}.*") if p.is_file() and ".part" not in p.suffixes]
    if len(found) != 1:
        raise StageError(
            STAGE, f"yt-dlp reported success but left no media file in {workdir}", permanent=False
        )
    return found[0]


