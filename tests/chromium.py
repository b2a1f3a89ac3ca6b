"""Headless Chromium (Debian's `chromium`) for the report tests: render a page
to a screenshot, as root, offline, with a fresh profile."""
import re
import shutil
import subprocess

import numpy as np

needs_chromium = __import__('pytest').mark.skipif(shutil.which('chromium') is None,
                                                  reason='Debian chromium not installed')


def referenced_images(html):
    return re.findall(r'<img src="([^"]+)"', html)


def screenshot(page, tmp_path, width=1200, height=2400):
    """The BGR screenshot of the page file ``page`` (a pathlib.Path)."""
    import cv2
    shot = tmp_path / 'shot.png'
    proc = subprocess.run(
        ['chromium', '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
         '--disable-background-networking', '--disable-component-update', '--disable-sync',
         '--user-data-dir=%s' % (tmp_path / 'profile'), '--window-size=%d,%d' % (width, height),
         '--screenshot=%s' % shot, page.as_uri()],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
    assert proc.returncode == 0 and shot.exists(), proc.stdout[-2000:]
    img = cv2.imread(str(shot))
    assert img.shape[:2] == (height, width)
    return img


def assert_not_blank(img):
    """Many distinct colours, and the pictures (not only white) fill a good share."""
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 1000
    assert (img.min(axis=2) < 200).mean() > 0.1
