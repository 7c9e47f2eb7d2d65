"""Members of (gzipped) tar archives and MATLAB files, with one-line errors naming the file."""

import io
import tarfile
import zlib

from libml.errors import UserError

import numpy as np
import scipy.io

TAR_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error)


def open_tar(path):
    """Opens a (gzipped) tar archive; UserError naming it if it is not one."""
    try:
        return tarfile.open(path)
    except TAR_ERRORS as e:
        raise UserError(f'{path} is not a readable tar archive ({e}): delete it and download it again') from e


def tar_member(tar, member):
    """Bytes of `member` inside the open archive `tar`; UserError naming both if absent or broken."""
    try:
        return tar.extractfile(member).read()
    except KeyError:
        raise UserError(f'{tar.name} has no {member}: is it the upstream archive?') from None
    except TAR_ERRORS as e:
        raise UserError(f'cannot read {member} from {tar.name} ({e}): delete it and download it again') from e


def load_mat(source, keys, what=None):
    """scipy.io.loadmat of a path or file object, checking that `keys` are present."""
    what = what or source
    try:
        mat = scipy.io.loadmat(source)
    except (ValueError, TypeError, OSError, scipy.io.matlab.MatReadError) as e:
        raise UserError(f'cannot read {what} as a MATLAB file ({e})') from e
    missing = [k for k in keys if k not in mat]
    if missing:
        raise UserError(f'{what} lacks {", ".join(missing)}: is it the upstream file?')
    return mat


def tar_mat(tar, member, keys):
    """A MATLAB file inside an open tar archive, as `load_mat` returns it."""
    return load_mat(io.BytesIO(tar_member(tar, member)), keys, f'{member} in {tar.name}')


def mat_strings(cell):
    """A MATLAB cell array of strings (as loadmat returns it) -> list of str."""
    return [str(np.squeeze(item)).strip() for item in np.ravel(cell)]
