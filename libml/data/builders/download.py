"""Where upstream files come from: a folder the user names, or a resumable download."""

import contextlib
import dataclasses
import http.client
import os
import urllib.error
import urllib.request

from libml import progress
from libml.errors import UserError


@dataclasses.dataclass(frozen=True)
class Sources:
    """How to get upstream files.

    downloads_dir: where downloads go ($ML_DATA/downloads); a file already there is reused.
    archive_dir: a folder holding the upstream files under their upstream names; when set,
        nothing is downloaded and a missing file is an error (`--archive_dir`).
    mirror: base URL replacing every upstream site: files are fetched from
        <mirror>/<folder>/<file name>, the layout of `downloads_dir` (`--download_url`).
    timeout: seconds to wait for a server to answer.
    """

    downloads_dir: str
    archive_dir: str | None = None
    mirror: str | None = None
    timeout: float = 15

    def fetch(self, filename, upstream, folder='', advice=None):
        """Local path of upstream file `filename`, downloaded from `upstream`/`filename` if needed.

        folder: sub-folder of `downloads_dir` (and of the mirror) for datasets whose files
            share names with another's; in `archive_dir` the file may sit in that sub-folder
            or directly in it.
        advice: what to tell the user when the download fails (see `download`).
        """
        if self.archive_dir:
            candidates = [os.path.join(self.archive_dir, folder, filename)] if folder else []
            for path in candidates + [os.path.join(self.archive_dir, filename)]:
                if os.path.isfile(path):
                    return path
            where = f' nor in its {folder}/ sub-folder' if folder else ''
            raise UserError(f'{filename} not found in --archive_dir={self.archive_dir}{where}')
        path = os.path.join(self.downloads_dir, folder, filename)
        if not os.path.isfile(path):
            base = upstream if self.mirror is None else self.mirror.rstrip('/') + (f'/{folder}' if folder else '')
            download(f'{base.rstrip("/")}/{filename}', path, self.timeout, advice)
        return path


def download(url, path, timeout, advice=None):
    """Fetches `url` into `path` with a progress bar, resuming a partial `path`.part (HTTP Range).

    An unreachable server or an HTTP error is a one-line UserError naming `url` and then
    `advice`, by default how to use --archive_dir instead; folders made for `path` are
    removed again if the failure leaves them empty.
    """
    with _folder_for(path):
        _fetch_url(url, path, timeout, advice)


@contextlib.contextmanager
def _folder_for(path):
    """Makes the folders `path` needs; on an error, removes again those it made and left empty."""
    made = []
    folder = os.path.dirname(path)
    while folder and not os.path.isdir(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        yield
    except BaseException:
        for folder in made:  # deepest first
            if os.listdir(folder):
                break
            os.rmdir(folder)
        raise


def _fetch_url(url, path, timeout, advice):
    """The body of `download`, into an existing folder."""
    filename = os.path.basename(path)
    part = path + '.part'
    done = os.path.getsize(part) if os.path.exists(part) else 0
    request = urllib.request.Request(url, headers={'Range': f'bytes={done}-'} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if response.status != 206:
                done = 0  # the server ignored the range: start again
            total = done + response.length if response.length is not None else None
            with (
                open(part, 'ab' if done else 'wb') as out,
                progress.bar(total=total, initial=done, unit='B', unit_scale=True, desc=filename) as bar,
            ):
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as e:
        if e.code == 416 and done:  # nothing left after the bytes we have
            os.replace(part, path)
            return
        advice = advice or f'download {filename} yourself and pass --archive_dir=<its folder>'
        raise UserError(f'cannot download {url} (HTTP {e.code} {e.reason}): {advice}') from e
    except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as e:
        reason = ' '.join(str(getattr(e, 'reason', e)).split())
        advice = advice or (
            f'without network, download {filename} elsewhere and pass --archive_dir=<its folder> '
            '(a rerun resumes a partial download)'
        )
        raise UserError(f'cannot download {url} ({reason}): {advice}') from e
    os.replace(part, path)
