"""Synthetic document pages from real text (scikit-learn's dataset descriptions) and real photos (skimage.data),
for the text detector and the document-orientation classifier."""

from __future__ import annotations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
          "retina", "colorwheel", "logo", "cat", "camera", "moon", "page", "text", "brick", "grass", "gravel")


def photos() -> list[np.ndarray]:
    """skimage.data's bundled images (shipped inside the scikit-image wheel), as RGB uint8."""
    from skimage import data

    out = []
    for name in PHOTOS:
        fn = getattr(data, name, None)
        if fn is None:
            continue
        try:
            img = np.asarray(fn())
        except Exception:  # an image that needs pooch (a download) is skipped
            continue
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append(np.ascontiguousarray(img[..., :3]).astype(np.uint8))
    return out


def words(rng) -> list[str]:
    from . import text

    out = []
    for c in text.load_text_chunks(rng, max_words=7):
        out.extend(c.split())
    return out


def _colors(rng):
    bg = int(rng.integers(175, 256))
    tint = rng.integers(-20, 21, size=3)
    fg = int(rng.integers(0, 90))
    return (tuple(int(np.clip(bg + t, 0, 255)) for t in tint),
            tuple(int(np.clip(fg + t, 0, 255)) for t in rng.integers(-25, 26, size=3)))


def text_tile(size: int, vocab: list[str], rng, photo: np.ndarray | None = None):
    """An RGB tile with 3-8 text lines; returns (uint8 HxWx3, line boxes [k, 4] xyxy)."""
    from PIL import Image, ImageDraw, ImageFilter, ImageFont

    bg, fg = _colors(rng)
    img = Image.new("RGB", (size, size), bg)
    if photo is not None and rng.random() < 0.5:  # a figure block in the page
        ph = Image.fromarray(photo)
        w = int(rng.integers(size // 4, size // 2))
        ph = ph.resize((w, max(8, int(w * ph.height / ph.width))))
        img.paste(ph, (int(rng.integers(0, size - w)), int(rng.integers(0, size // 2))))
    draw = ImageDraw.Draw(img)
    boxes, y = [], int(rng.integers(2, 20))
    while y < size - 20 and len(boxes) < 8:
        fs = int(rng.integers(14, 33))
        font = ImageFont.load_default(size=fs)
        n = int(rng.integers(1, 7))
        start = int(rng.integers(0, max(1, len(vocab) - n)))
        line = " ".join(vocab[start:start + n])
        x = int(rng.integers(2, size // 3))
        left, t, r, b = draw.textbbox((x, y), line, font=font)
        if r > size - 2:  # clip the line to the tile by dropping words
            while r > size - 2 and " " in line:
                line = line.rsplit(" ", 1)[0]
                left, t, r, b = draw.textbbox((x, y), line, font=font)
            if r > size - 2:
                y = b + 4
                continue
        draw.text((x, y), line, font=font, fill=fg)
        boxes.append((left, t, r, b))
        y = b + int(rng.integers(4, 30))
    blur = float(rng.uniform(0.0, 0.8))
    if blur > 0.2:
        img = img.filter(ImageFilter.GaussianBlur(blur))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, float(rng.uniform(0.0, 5.0)), size=(size, size, 3))
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8), np.asarray(boxes, dtype=np.float32).reshape(-1, 4)


def page(width: int, height: int, vocab: list[str], rng, photo: np.ndarray | None = None) -> np.ndarray:
    """A portrait document page: a title, justified-ish paragraphs and maybe a figure; RGB uint8."""
    from PIL import Image, ImageDraw, ImageFont

    bg, fg = _colors(rng)
    img = Image.new("RGB", (width, height), bg)
    draw = ImageDraw.Draw(img)
    margin = int(rng.integers(20, 50))
    fs = int(rng.integers(11, 19))
    y = margin
    title = ImageFont.load_default(size=fs + int(rng.integers(4, 12)))
    k = int(rng.integers(0, len(vocab) - 8))
    draw.text((margin, y), " ".join(vocab[k:k + int(rng.integers(2, 6))]), font=title, fill=fg)
    y += int(title.size * 1.8)
    font = ImageFont.load_default(size=fs)
    figure_at = int(rng.integers(0, 4)) if photo is not None else -1
    para = 0
    while y < height - margin - fs:
        if para == figure_at:
            ph = Image.fromarray(photo)
            w = int(rng.integers((width - 2 * margin) // 2, width - 2 * margin))
            h = max(8, int(w * ph.height / ph.width))
            if y + h < height - margin:
                img.paste(ph.resize((w, h)), (margin, y))
                y += h + fs
        for _ in range(int(rng.integers(3, 9))):  # lines of one paragraph
            line, k = [], int(rng.integers(0, len(vocab) - 20))
            while k < len(vocab):
                cand = line + [vocab[k]]
                if draw.textlength(" ".join(cand), font=font) > width - 2 * margin:
                    break
                line, k = cand, k + 1
            draw.text((margin, y), " ".join(line), font=font, fill=fg)
            y += int(fs * 1.45)
            if y >= height - margin - fs:
                break
        y += fs
        para += 1
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0.0, float(rng.uniform(0.0, 4.0)), size=(height, width, 3))
    return np.clip(np.rint(arr), 0, 255).astype(np.uint8)
