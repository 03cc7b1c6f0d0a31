"""Reading images from disk, with errors a user can act on.

Every vision encoder goes through :func:`load_image`, so a missing, truncated or non-image file
fails the same way everywhere: an :class:`~mrmkg.errors.InputError` that names the file, never a
PIL traceback half-way through encoding a whole graph.
"""
from __future__ import annotations

from pathlib import Path

from PIL import Image, UnidentifiedImageError

from mrmkg.errors import InputError


def load_image(path) -> Image.Image:
    """Open ``path`` fully (all pixels decoded now, not lazily) and return it as an RGB image.

    A ``PIL.Image.Image`` is passed through (converted to RGB). Palette/alpha/greyscale images are
    converted to RGB; transparency is dropped onto black, which is what ``convert("RGB")`` does.

    Raises:
        InputError: the file is missing, is not a file, is empty, is not an image PIL can read, or is
            truncated/corrupt (detected by decoding every pixel).
    """
    if isinstance(path, Image.Image):
        return path if path.mode == "RGB" else path.convert("RGB")
    p = Path(path)
    if not p.exists():
        raise InputError("image file not found", path=p)
    if not p.is_file():
        raise InputError("expected an image file, found a directory or special file", path=p)
    if p.stat().st_size == 0:
        raise InputError("image file is empty (0 bytes)", path=p)
    try:
        with Image.open(p) as im:
            # load() decodes every pixel, so a truncated file fails here and not later inside a
            # batch; PIL's default LOAD_TRUNCATED_IMAGES=False makes truncation an OSError.
            im.load()
            return im.convert("RGB")
    except UnidentifiedImageError:
        raise InputError("not an image PIL can read (expected JPEG, PNG, GIF, BMP, WebP, ...)", path=p) from None
    except (OSError, SyntaxError, ValueError) as e:
        # OSError: "image file is truncated", broken data stream; SyntaxError: corrupt PNG chunks.
        raise InputError(f"image file is truncated or corrupt ({e})", path=p) from None
    except Image.DecompressionBombError as e:
        raise InputError(f"image is too large to decode safely ({e})", path=p) from None
