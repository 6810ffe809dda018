"""The 2D picture reader and writer (PNG, TIFF, JPEG, BMP): values kept exactly, channels,
pages, and the writer's rules. Pictures are written here with Pillow and tifffile directly,
so the reader is checked against other writers than its own."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from PIL import Image

from medseg.errors import CorruptFileError, InputNotFoundError, UnsupportedFormatError
from medseg.io import read_volume, write_volume
from medseg.io.formats import gray_labels, luminance
from medseg.io.image2d import read_image2d
from medseg.volume import Volume


@pytest.fixture
def rng():
    return np.random.default_rng(12)


def test_8bit_gray_png_is_one_channel_single_slice(tmp_path, rng):
    pixels = rng.integers(0, 256, (30, 41), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "g.png")
    vol = read_volume(tmp_path / "g.png")
    assert vol.shape == (30, 41, 1) and vol.array.dtype == np.uint8
    assert np.array_equal(vol.array[:, :, 0], pixels)  # rows down i, columns along j
    assert np.array_equal(vol.affine, np.eye(4)) and vol.spacing == (1.0, 1.0, 1.0)
    assert vol.meta.source_format == "png" and vol.meta.source == str(tmp_path / "g.png")


def test_rgb_becomes_channels_and_alpha_is_dropped(tmp_path, rng):
    rgb = rng.integers(0, 256, (20, 25, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    alpha = rng.integers(0, 256, (20, 25, 1), dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(tmp_path / "ca.png")
    Image.fromarray(rgb).save(tmp_path / "c.bmp")
    tifffile.imwrite(tmp_path / "c.tif", rgb, photometric="rgb")
    Image.fromarray(np.concatenate([rgb, alpha], axis=-1)).save(tmp_path / "ca.tif")  # ExtraSamples=alpha
    for name in ("c.png", "ca.png", "c.bmp", "c.tif", "ca.tif"):
        vol = read_volume(tmp_path / name)
        assert vol.shape == (20, 25, 1, 3), name
        assert np.array_equal(vol.array[:, :, 0, :], rgb), name
    gray_alpha = Image.fromarray(rgb[..., 0]).convert("LA")
    gray_alpha.save(tmp_path / "la.png")
    assert np.array_equal(read_volume(tmp_path / "la.png").array[:, :, 0], rgb[..., 0])


def test_16bit_values_are_kept_exactly(tmp_path, rng):
    pixels = rng.integers(0, 65536, (17, 23), dtype=np.uint16)
    pixels[0, 0], pixels[0, 1] = 0, 65535
    tifffile.imwrite(tmp_path / "a.tif", pixels)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    Image.fromarray(pixels).save(tmp_path / "lzw.tiff", compression="tiff_lzw")  # decoded by Pillow
    for name in ("a.tif", "a.png", "lzw.tiff"):
        vol = read_volume(tmp_path / name)
        assert vol.array.dtype == np.uint16, name
        assert np.array_equal(vol.array[:, :, 0], pixels), name
    floats = rng.normal(size=(9, 11)).astype(np.float32)
    tifffile.imwrite(tmp_path / "f.tif", floats)
    assert np.array_equal(read_volume(tmp_path / "f.tif").array[:, :, 0], floats)


def test_multipage_tiff_stacks_pages_along_k(tmp_path, rng):
    pages = rng.integers(0, 4000, (5, 12, 14), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "stack.tif", pages, photometric="minisblack")
    frames = [Image.fromarray(p) for p in pages]
    frames[0].save(tmp_path / "pil.tif", save_all=True, append_images=frames[1:], compression="tiff_lzw")
    for name in ("stack.tif", "pil.tif"):
        vol = read_volume(tmp_path / name)
        assert vol.shape == (12, 14, 5), name
        for k in range(5):
            assert np.array_equal(vol.array[:, :, k], pages[k]), (name, k)


def test_palette_and_bilevel_pictures_read_as_indices(tmp_path):
    ids = np.zeros((8, 10), np.uint8)
    ids[2:5, 3:7] = 2
    ids[6:, :] = 1
    pal = Image.fromarray(ids, mode="L").convert("P")
    pal.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    pal.save(tmp_path / "pal.png")
    assert np.array_equal(read_volume(tmp_path / "pal.png").array[:, :, 0], ids)
    Image.fromarray(ids > 0).save(tmp_path / "bits.png")
    bits = read_volume(tmp_path / "bits.png")
    assert bits.array.dtype == np.uint8 and np.array_equal(bits.array[:, :, 0], (ids > 0).astype(np.uint8))


def test_jpeg_is_read(tmp_path):
    flat = np.full((16, 16), 120, np.uint8)
    Image.fromarray(flat).save(tmp_path / "x.jpg", quality=100)
    vol = read_volume(tmp_path / "x.jpg")
    assert vol.shape == (16, 16, 1) and vol.meta.source_format == "jpeg"
    assert np.abs(vol.array.astype(int) - 120).max() <= 1


def test_the_content_chooses_the_decoder(tmp_path):
    """A PNG saved under a .tif name is still read; standalone, the kind comes from the content."""
    pixels = np.arange(12, dtype=np.uint8).reshape(3, 4)
    Image.fromarray(pixels).save(tmp_path / "really_png.tif", format="PNG")
    vol = read_volume(tmp_path / "really_png.tif")
    assert np.array_equal(vol.array[:, :, 0], pixels) and vol.meta.source_format == "tiff"  # the table's row
    assert read_image2d(tmp_path / "really_png.tif").meta.source_format == "png"
    tifffile.imwrite(tmp_path / "t.tif", pixels)
    assert read_image2d(tmp_path / "t.tif").meta.source_format == "tiff"


def test_unreadable_pictures_are_named(tmp_path):
    with pytest.raises(InputNotFoundError):
        read_image2d(tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(CorruptFileError, match=r"bad\.png"):
        read_volume(tmp_path / "bad.png")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(CorruptFileError, match=r"bad\.tif"):
        read_volume(tmp_path / "bad.tif")
    frames = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (0, 9)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedFormatError, match="2 frames"):
        read_volume(tmp_path / "anim.png")


def test_decoded_size_is_limited(tmp_path, monkeypatch):
    """A header claiming a huge picture is refused before decoding (the limit of damaged headers)."""
    tifffile.imwrite(tmp_path / "a.tif", np.zeros((64, 64), np.uint16))
    Image.fromarray(np.zeros((64, 64), np.uint8)).save(tmp_path / "a.png")
    monkeypatch.setenv("MEDSEG_MAX_IMAGE_BYTES", "1000")
    for name in ("a.tif", "a.png"):
        with pytest.raises(CorruptFileError, match="past the limit"):
            read_volume(tmp_path / name)
    monkeypatch.delenv("MEDSEG_MAX_IMAGE_BYTES")
    blob = (tmp_path / "a.tif").read_bytes()
    (tmp_path / "short.tif").write_bytes(blob[:400])  # the header, and too few pixels
    with pytest.raises(CorruptFileError, match="holds 400 bytes"):
        read_volume(tmp_path / "short.tif")


# -- writing ----------------------------------------------------------------------------------------
def test_png_writer_uses_8_bits_up_to_255_and_16_bits_above(tmp_path):
    labels = np.zeros((7, 9, 1), np.int64)
    labels[1:3, 2:5] = 255
    write_volume(Volume(labels, np.eye(4)), tmp_path / "l8.png")
    with Image.open(tmp_path / "l8.png") as img:
        assert img.mode == "L" and img.size == (9, 7)  # (width, height)
        assert np.array_equal(np.asarray(img), labels[:, :, 0])
    labels[0, 0] = 300
    write_volume(Volume(labels.astype(np.uint16), np.eye(4)), tmp_path / "l16.png")
    with Image.open(tmp_path / "l16.png") as img:
        assert img.mode.startswith("I") and np.array_equal(np.asarray(img), labels[:, :, 0])


def test_tiff_writer_keeps_types_and_pages(tmp_path, rng):
    labels = rng.integers(0, 1000, (6, 8, 1)).astype(np.uint16)
    write_volume(Volume(labels, np.eye(4)), tmp_path / "l.tif")
    stored = tifffile.imread(tmp_path / "l.tif")
    assert stored.dtype == np.uint16 and stored.shape == (6, 8) and np.array_equal(stored, labels[:, :, 0])
    stack = rng.normal(size=(6, 8, 3)).astype(np.float32)  # 3 pages, not RGB
    write_volume(Volume(stack, np.eye(4)), tmp_path / "s.tif")
    back = read_volume(tmp_path / "s.tif")
    assert back.shape == (6, 8, 3) and np.array_equal(back.array, stack)


def test_writer_refuses_what_a_format_cannot_hold(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="one 2D slice"):
        write_volume(Volume(np.zeros((4, 4, 3), np.uint8), np.eye(4)), tmp_path / "v.png")
    with pytest.raises(UnsupportedFormatError, match="fractional"):
        write_volume(Volume(np.full((4, 4, 1), 0.5, np.float32), np.eye(4)), tmp_path / "f.png")
    with pytest.raises(UnsupportedFormatError, match="0-65535"):
        write_volume(Volume(np.full((4, 4, 1), -1, np.int16), np.eye(4)), tmp_path / "n.png")
    with pytest.raises(UnsupportedFormatError, match="0-255"):
        write_volume(Volume(np.full((4, 4, 1), 300, np.int16), np.eye(4)), tmp_path / "b.bmp")
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_picture_nifti_picture_round_trip_is_exact(tmp_path, rng):
    for name, pixels in (
        ("g.png", rng.integers(0, 256, (13, 21), dtype=np.uint8)),
        ("w.png", rng.integers(0, 65536, (13, 21), dtype=np.uint16)),
        ("c.png", rng.integers(0, 256, (13, 21, 3), dtype=np.uint8)),
        ("t.tif", rng.integers(0, 65536, (13, 21), dtype=np.uint16)),
    ):
        if name.endswith(".png"):
            Image.fromarray(pixels).save(tmp_path / name)
        else:
            tifffile.imwrite(tmp_path / name, pixels)
        first = read_volume(tmp_path / name)
        write_volume(first, tmp_path / f"{name}.nii.gz")
        write_volume(read_volume(tmp_path / f"{name}.nii.gz"), tmp_path / f"back_{name}")
        back = read_volume(tmp_path / f"back_{name}")
        assert back.array.dtype == first.array.dtype and np.array_equal(back.array, first.array), name


# -- helpers for label and display callers ------------------------------------------------------------
def test_gray_labels_accepts_grey_rgb_and_refuses_colour(tmp_path):
    ids = np.zeros((6, 6), np.uint8)
    ids[1:4, 1:4] = 3
    Image.fromarray(np.dstack([ids] * 3)).save(tmp_path / "grey_rgb.png")
    vol = gray_labels(read_volume(tmp_path / "grey_rgb.png"), "grey_rgb.png")
    assert vol.shape == (6, 6, 1) and np.array_equal(vol.array[:, :, 0], ids)
    colour = np.dstack([ids, ids * 0, ids])
    Image.fromarray(colour).save(tmp_path / "colour.png")
    with pytest.raises(UnsupportedFormatError, match="colour image"):
        gray_labels(read_volume(tmp_path / "colour.png"), "colour.png")
    multi = Volume(np.zeros((4, 4, 4, 2)), np.eye(4))  # a 4D NIfTI is not a picture: untouched
    assert gray_labels(multi, "x.nii.gz") is multi


def test_luminance_of_a_colour_picture(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    rgb[1, 1] = (100, 100, 100)
    Image.fromarray(rgb).save(tmp_path / "c.png")
    grey = luminance(read_volume(tmp_path / "c.png"))
    assert grey.shape == (2, 2, 1)
    assert grey.array[0, 0, 0] == pytest.approx(0.299 * 255) and grey.array[1, 1, 0] == pytest.approx(100)
