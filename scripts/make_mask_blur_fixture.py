#!/usr/bin/env python3
"""AUTOMATIC1111's mask blur, computed by OpenCV, for test/inpaint.test.ts.

A1111 (modules/processing.py, StableDiffusionProcessingImg2Img.init) blurs the 8-bit grey mask with
cv2.GaussianBlur(mask, (k, 1), r) then cv2.GaussianBlur(mask, (1, k), r), k = 2 * int(2.5 * r + 0.5) + 1.
This applies it to test/fixtures/inpaint/mask.png (made by make_inpaint_fixture.py) for several
radii, the largest with a kernel longer than the image.

Usage (OpenCV's Python bindings, e.g. Debian's python3-opencv with its own numpy):
    /usr/bin/python3 scripts/make_mask_blur_fixture.py
Writes test/fixtures/inpaint/blur-reference.json.
"""
import base64
import json
import pathlib

import cv2
import numpy as np

HERE = pathlib.Path(__file__).resolve().parents[1] / "test" / "fixtures" / "inpaint"


def blur(mask: np.ndarray, r: int) -> np.ndarray:
    k = 2 * int(2.5 * r + 0.5) + 1
    mask = cv2.GaussianBlur(mask, (k, 1), r)
    return cv2.GaussianBlur(mask, (1, k), r)


def main():
    mask = cv2.imread(str(HERE / "mask.png"), cv2.IMREAD_GRAYSCALE)
    assert mask is not None and mask.dtype == np.uint8
    out = {str(r): base64.b64encode(np.ascontiguousarray(blur(mask, r)).tobytes()).decode() for r in (1, 2, 4, 7, 12)}
    doc = dict(about="cv2.GaussianBlur as A1111's mask blur; made by scripts/make_mask_blur_fixture.py",
               opencv=cv2.__version__, width=int(mask.shape[1]), height=int(mask.shape[0]), blurred=out)
    (HERE / "blur-reference.json").write_text(json.dumps(doc, indent=0) + "\n")
    print("wrote", HERE / "blur-reference.json")


if __name__ == "__main__":
    main()
