"""Synthetic aerial semantic-labelling tiles in the ISPRS Vaihingen layout
(`caffe-mlic synth --task seg`).

A tile is a true-colour (RGB) top view at a fixed ground resolution (about
Vaihingen's 9 cm: a car is ~9x20 px, a house 60-200 px), so a larger tile is
a larger area, not a zoom. It holds the six ISPRS classes:

- impervious surfaces: a road network (straight or bent grey bands 20-42 px
  wide crossing the tile), paved yards around buildings, driveways;
- building: rectangular or L-shaped roofs along the roads, red, brown, grey
  (some as grey as the roads), dark or light; gabled roofs have a lit and a
  shaded half and tile rows, flat roofs carry small structures; each casts a
  shadow away from the tile's sun;
- low vegetation: the background, light yellowish green with low-frequency
  variation, darker and drier patches;
- tree: clusters of bumpy round canopies, darker green, lit on the sun's
  side, casting shadows;
- car: ~9x20 px, random colours, parked in rows along roads and in yards,
  oriented with them, dark windows;
- clutter (rare): small irregular water-blue, dirt-brown or odd-coloured
  patches.

Shadows darken the class they fall on; a tile also gets a brightness and
colour cast of its own, slow illumination changes, a slight blur and sensor
noise. Classes share colour ranges (grey roofs and roads, dark grass and
trees, shadows on everything, random car colours), so per-pixel colour alone
is clearly imperfect. Each tile comes from its own random stream, derived
from the seed and its index alone: the same seed gives byte-identical files.

That is the default scene, ``suburb``: most of its pixels can be labelled
from local colour and texture. The ``context`` scene (issue 25) is built so
that they cannot, and only the surroundings tell roofs from paving:

- a street grid roughly on the tile axes: streets 22-36 px wide and at least
  one main road 56-76 px wide; every paved surface (streets, lots, yards,
  paths) and most roofs draw their colour from one distribution and share
  the paving's texture fields (brightness, stains, a slow colour drift), so
  a roof's interior looks like a road's up close;
- buildings set back from the street in a ring of grass or a paved yard,
  often with a path to the street. 80 % have a flat roof paved like the
  street, 70-118 px a side (its interior far from any edge; a whole roof
  fits in a 128-px crop), told apart only by a 1.5-2.5 px parapet line
  (lighter or darker), the shadow it casts (at most 16 px, never reaching a
  street or lot) and where it sits; the rest are small suburb roofs (36-56
  px, red, brown, dark or light, no pixel of theirs far from an edge);
- parking lots of the street's own paving (no seam, no markings) opening
  onto it, 70-118 px a side, a row of cars (about 9 x 20 px) side by side
  along the far edge, a second row in some deep lots;
- street trees whose canopies overhang the street's edge, garden trees
  (kept off roofs), rare clutter, cars parked along the streets.

The hard-pixel mask of every tile (either scene) marks the impervious and
building pixels farther than ``hard_distance`` px (HARD_DISTANCE = 24) from
any other label (labelmaps.hard_pixel_mask): there a window of radius
< 24 px sees one label only. In the context scene a local classifier is at
chance on them (tests/data/test_synth_aerial.py).

Layout written under OUT_DIR (as ISPRS Vaihingen; N = 1..tiles):
    top/top_mosaic_09cm_area{N}.tif                     RGB image
    gts_for_participants/top_mosaic_09cm_area{N}.tif    labels, ISPRS colours
    gts_eroded_for_participants/top_mosaic_09cm_area{N}_noBoundary.tif
                                   the same with class boundaries (radius 3) black
    hard/top_mosaic_09cm_area{N}.png
                                   hard-pixel mask, uint8, 255 = hard, 0 = not
    classes.txt                    class names, one per line
    palette.txt                    `name R G B` (labelmaps' palette-file format)
    train.txt, val.txt, test.txt   `top/<tile> gts_for_participants/<tile>`
    synth.json                     scene, seed, tile size, class counts and
                                   shares, splits, hard_distance and per split
                                   {tiles, pixels, hard_pixels, hard_share}
                                   (hard_share: of the impervious and building pixels)
All images but the masks are LZW-compressed TIFF (lossless); where OpenCV
cannot write TIFF, PNG with the same names but a `.png` suffix. The set is
written into a hidden ``.NAME.partial`` folder beside OUT_DIR and renamed
into place once complete (synth.staged_set).
"""
import math
import os
import time

import numpy as np

from caffe_mlic.errors import UsageError
from caffe_mlic.fileio import atomic_files, atomic_write, atomic_write_json
from caffe_mlic.data.labelmaps import (HARD_DISTANCE, MAX_HARD_DISTANCE, ISPRS_PALETTE, check_hard_distance, erode_boundaries, hard_pixel_mask, index_to_colour,
                                       isprs_palette)
from caffe_mlic.progress import progress
from caffe_mlic.data.synth import (_split_counts, _value_noise, check_split, holds_data_set,  # noqa: F401
                                   staged_set)

CLASSES = tuple(name for name, _ in ISPRS_PALETTE)
IMP, BUILDING, LOWVEG, TREE, CAR, CLUTTER = range(6)
SPLITS = ('train', 'val', 'test')
ERODE_RADIUS = 3
MIN_TILE, MAX_TILE = 64, 4096
TILE_NAME = 'top_mosaic_09cm_area%d'
DIRS = ('top', 'gts_for_participants', 'gts_eroded_for_participants')
MAX_TILES = 10000          # a miniature: past this it only fills the disk
SCENES = ('suburb', 'context')
HARD_CLASSES = (IMP, BUILDING)  # the pair that context tells apart in the context scene
HARD_DIR = 'hard'
_SEED_TAG = 0x5E6  # keeps tile streams apart from other users of the same seed

# roof colour families (RGB) and their odds; grey roofs are drawn like roads
ROOFS = (((178, 88, 66), 0.3), ((128, 88, 66), 0.2), (None, 0.25),
         ((72, 72, 78), 0.1), ((192, 190, 184), 0.15))
CAR_COLOURS = ((222, 222, 222), (38, 38, 44), (160, 162, 166), (170, 34, 32), (40, 62, 140))


# ----------------------------------------------------------------- geometry

def _rect(cx, cy, length, width, angle):
    """Corners (4, 2) of a length x width rectangle along ``angle``."""
    c, s = math.cos(angle), math.sin(angle)
    u = np.array([c, s]) * length / 2
    v = np.array([-s, c]) * width / 2
    p = np.array([cx, cy])
    return np.stack([p - u - v, p + u - v, p + u + v, p - u + v])


def _blob(rng, cx, cy, r, n=20, jag=0.12):
    """A round polygon of radius ~r whose radius wobbles by ``jag``."""
    a = np.linspace(0, 2 * math.pi, n, endpoint=False) + rng.uniform(0, 2 * math.pi)
    rad = r * (1 + jag * rng.uniform(-1, 1, n))
    return np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], 1)


def _poly_region(pts, h, w):
    """(slices, bool mask) of polygon ``pts`` within an h x w tile; None if outside."""
    import cv2
    x0, y0 = np.floor(pts.min(0)).astype(int)
    x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [np.round((pts - (x0, y0)) * 16).astype(np.int32)], 1, cv2.LINE_8, 4)
    return (slice(y0, y1), slice(x0, x1)), mask.astype(bool)


def _segment_distance(px, py, seg):
    """Distance from (px, py) to segment ``seg`` and the nearest point on it."""
    ax, ay, bx, by = seg[:4]
    dx, dy = bx - ax, by - ay
    t = np.clip(((px - ax) * dx + (py - ay) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
    qx, qy = ax + t * dx, ay + t * dy
    return math.hypot(px - qx, py - qy), (qx, qy)


# ----------------------------------------------------------------- the scene

class _Scene:
    """One tile under construction: class map, part map (every drawn piece
    is a part with its own colour and shading attributes), road mask, and
    the shadow casters."""

    def __init__(self, rng, w, h):
        self.rng, self.w, self.h = rng, w, h
        self.label = np.full((h, w), LOWVEG, np.uint8)
        self.part = np.zeros((h, w), np.int32)  # part 0: the low-vegetation background
        self.road = np.zeros((h, w), bool)
        self.counts = np.zeros(len(CLASSES), np.int64)
        self.counts[LOWVEG] = h * w
        self.parts = [((0, 0, 0), 1.0, 0.0, 0.0, 0.0, 1.0, 0)]
        self.roads = []      # (ax, ay, bx, by, width)
        self.road_parts = [] # the context scene's part of each road
        self.casters = []    # (class, polygon, height in px)
        self.area = float(h * w)
        self.scale = self.area / 1e6  # object counts follow the area
        a = rng.uniform(0, 2 * math.pi)
        self.sun = np.array([math.cos(a), math.sin(a)])  # direction shadows fall
        self.drift = 0.0     # context scene: paving's slow colour drift (a fraction either way)

    def new_part(self, colour, shade=1.0, angle=0.0, cx=0.0, cy=0.0, size=1.0, style=0):
        """Register a part; returns its id. style: 1 tiled roof, 2 tree, 3 car."""
        self.parts.append((tuple(colour), shade, angle, cx, cy, size, style))
        return len(self.parts) - 1

    def share(self, cls):
        return self.counts[cls] / self.area

    def is_free(self, pts, forbid, avoid_road=True):
        """True if no pixel of the polygon has a class in ``forbid`` (or is road)."""
        reg = _poly_region(pts, self.h, self.w)
        if reg is None:
            return False
        sl, m = reg
        if avoid_road and (self.road[sl] & m).any():
            return False
        return not np.isin(self.label[sl][m], forbid).any()

    def paint(self, pts, cls, part, over=None, road=False, off_road=False):
        """Fill the polygon with class ``cls`` / ``part`` where the class now is
        one of ``over`` (all when None); returns the pixels painted."""
        reg = _poly_region(pts, self.h, self.w)
        if reg is None:
            return 0
        sl, m = reg
        lab = self.label[sl]
        if over is not None:
            m &= np.isin(lab, over)
        if off_road:
            m &= ~self.road[sl]
        n = int(m.sum())
        if n:
            self.counts -= np.bincount(lab[m], minlength=len(CLASSES))
            self.counts[cls] += n
            lab[m] = cls
            self.part[sl][m] = part
            if road:
                self.road[sl] |= m
        return n

    def nearest_road(self, x, y):
        """(distance, nearest point, segment) of the closest road segment."""
        best = None
        for seg in self.roads:
            d, q = _segment_distance(x, y, seg)
            if best is None or d < best[0]:
                best = (d, q, seg)
        return best


# ----------------------------------------------------------------- layers

def _grey(rng, lo=95, hi=150):
    g = rng.uniform(lo, hi)
    return np.clip(g + rng.uniform(-5, 7, 3) * (1, 0.8, 0.5), 0, 255)


def _roads(sc):
    """Straight or once-bent roads through the tile, as grey bands."""
    rng = sc.rng
    side = math.sqrt(sc.area)
    n = max(1, int(round(rng.uniform(0.0032, 0.0046) * side)))
    reach = 1.5 * math.hypot(sc.w, sc.h)
    for _ in range(n):
        if rng.uniform() < 0.6:  # mostly a street grid, roughly on the tile axes
            a1 = rng.integers(2) * math.pi / 2 + rng.normal(0, 0.12)
        else:
            a1 = rng.uniform(0, math.pi)
        a2 = a1 + (rng.choice([-1, 1]) * rng.uniform(0.3, 0.9) if rng.uniform() < 0.5 else 0)
        mx, my = rng.uniform(0.1, 0.9) * sc.w, rng.uniform(0.1, 0.9) * sc.h
        width = rng.uniform(20, 42)
        part = sc.new_part(_grey(rng))
        ends = ((mx - reach * math.cos(a1), my - reach * math.sin(a1)),
                (mx + reach * math.cos(a2), my + reach * math.sin(a2)))
        for ex, ey in ends:
            length = math.hypot(ex - mx, ey - my)
            ang = math.atan2(ey - my, ex - mx)
            sc.paint(_rect((mx + ex) / 2, (my + ey) / 2, length, width, ang), IMP, part, road=True)
            sc.roads.append((mx, my, ex, ey, width))
        sc.paint(_blob(rng, mx, my, width / 2, 24, 0), IMP, part, road=True)  # the bend


def _road_point(sc, beside):
    """(x, y, road angle) inside the tile, ``beside`` px off a random road's
    edge (negative: on the road), on either side; None if none was found."""
    rng = sc.rng
    for _ in range(10):
        ax, ay, bx, by, rw = sc.roads[rng.integers(len(sc.roads))]
        t, ang = rng.uniform(), math.atan2(by - ay, bx - ax)
        off = rng.choice([-1, 1]) * (rw / 2 + beside)
        x = ax + t * (bx - ax) - math.sin(ang) * off
        y = ay + t * (by - ay) + math.cos(ang) * off
        if -20 <= x < sc.w + 20 and -20 <= y < sc.h + 20:
            return x, y, ang
    return None


def _roof_colour(rng):
    k = rng.choice(len(ROOFS), p=[p for _, p in ROOFS])
    base = ROOFS[k][0]
    if base is None:
        return _grey(rng, 100, 150)
    return np.clip(np.array(base) + rng.uniform(-14, 14, 3), 0, 255)


def _building_site(sc):
    """(cx, cy, angle, length, width) of a new building: mostly facing a road."""
    rng = sc.rng
    length = rng.uniform(60, 200)
    width = rng.uniform(50, min(length, 130))
    on_road = _road_point(sc, rng.uniform(8, 50) + width / 2) if rng.uniform() < 0.75 else None
    if on_road:
        cx, cy, ang = on_road
    else:
        cx, cy = rng.uniform(-40, sc.w + 40), rng.uniform(-40, sc.h + 40)
        near = sc.nearest_road(cx, cy)
        ang = math.atan2(near[2][3] - near[2][1], near[2][2] - near[2][0]) if near else 0.0
    if rng.uniform() < 0.5:
        ang += math.pi / 2
        length, width = width, length  # gable across the road
    return cx, cy, ang + rng.normal(0, 0.03), length, width


def _wings(rng, cx, cy, ang, length, width):
    """The building's rectangles (cx, cy, length, width, angle): one, or two for an L."""
    wings = [(cx, cy, length, width, ang)]
    if rng.uniform() < 0.35:
        l2, w2 = rng.uniform(40, 110), rng.uniform(40, min(width, 90))
        end = rng.choice([-1, 1]) * (length / 2 - w2 / 2)
        out = rng.choice([-1, 1]) * (width / 2 + l2 / 2 - 2)
        c, s = math.cos(ang), math.sin(ang)
        wings.append((cx + c * end - s * out, cy + s * end + c * out, l2, w2, ang + math.pi / 2))
    return wings


def _roof(sc, wing, colour, gabled):
    """Paint one wing: two halves around the ridge (gabled) or flat with fixtures."""
    rng = sc.rng
    cx, cy, length, width, ang = wing
    if not gabled:
        sc.paint(_rect(*wing), BUILDING, sc.new_part(colour, 1.0, ang, cx, cy))
        for _ in range(rng.integers(0, 4)):  # vents, skylights, AC units
            fx = cx + rng.uniform(-0.35, 0.35) * length * math.cos(ang)
            fy = cy + rng.uniform(-0.35, 0.35) * length * math.sin(ang)
            part = sc.new_part(colour * rng.uniform(0.6, 0.85))
            sc.paint(_rect(fx, fy, rng.uniform(6, 16), rng.uniform(5, 12), ang), BUILDING, part,
                     over=(BUILDING,))
        return
    normal = np.array([-math.sin(ang), math.cos(ang)])
    for side in (-1, 1):
        lit = float(np.dot(side * normal, -sc.sun))
        part = sc.new_part(colour, 1 + 0.16 * lit, ang, cx, cy, 1.0, 1)
        hx, hy = cx + side * normal[0] * width / 4, cy + side * normal[1] * width / 4
        sc.paint(_rect(hx, hy, length, width / 2 + 1, ang), BUILDING, part)


def _building(sc):
    """Try to place one building with its yard and driveway; True if placed."""
    rng = sc.rng
    cx, cy, ang, length, width = _building_site(sc)
    wings = _wings(rng, cx, cy, ang, length, width)
    if not all(sc.is_free(_rect(x, y, l + 10, w + 10, a), (BUILDING,)) for x, y, l, w, a in wings):
        return False
    yard = sc.new_part(_grey(rng, 105, 165) * rng.uniform(0.95, 1.08, 3), angle=ang)
    margin = rng.uniform(8, 36)
    for x, y, l, w, a in wings:
        sc.paint(_rect(x, y, l + 2 * margin, w + 2 * margin, a), IMP, yard, over=(LOWVEG,))
    near = sc.nearest_road(cx, cy)
    if near and near[0] < 250:
        (qx, qy), d = near[1], near[0]
        sc.paint(_rect((cx + qx) / 2, (cy + qy) / 2, d, rng.uniform(10, 18), math.atan2(qy - cy, qx - cx)),
                 IMP, yard, over=(LOWVEG,))
    colour, gabled = _roof_colour(rng), rng.uniform() < 0.65
    height = rng.uniform(8, 26)
    for wing in wings:
        _roof(sc, wing, colour, gabled)
        sc.casters.append((BUILDING, _rect(*wing), height))
    return True


def _lots(sc, target):
    """Paved squares and parking lots on grass beside roads until impervious
    surfaces cover ``target`` of the tile."""
    rng = sc.rng
    for _ in range(int(100 * sc.scale) + 10):
        if sc.share(IMP) >= target:
            return
        length, width = rng.uniform(40, 180), rng.uniform(30, 110)
        site = _road_point(sc, width / 2 - 4)
        if site:
            part = sc.new_part(_grey(rng, 100, 160), angle=site[2])
            sc.paint(_rect(site[0], site[1], length, width, site[2]), IMP, part, over=(LOWVEG,))


def _trees(sc, target, off_roofs=False):
    """Clusters of round canopies until trees cover ``target`` of the tile.
    ``off_roofs``: a canopy that would reach over a roof is left out (its
    shadow would fall deep inside the roof)."""
    rng = sc.rng
    for _ in range(int(400 * sc.scale) + 40):
        if sc.share(TREE) >= target:
            return
        x, y = rng.uniform(0, sc.w), rng.uniform(0, sc.h)
        if sc.label[int(y), int(x)] == BUILDING or sc.road[int(y), int(x)]:
            continue
        spread = rng.uniform(12, 60)
        base = np.array((62, 98, 46)) if rng.uniform() < 0.8 else np.array((96, 122, 62))
        for _ in range(rng.integers(3, 16)):
            px, py = rng.normal((x, y), spread)
            r = rng.uniform(9, 30)
            if not (0 <= px < sc.w and 0 <= py < sc.h) or sc.label[int(py), int(px)] not in (LOWVEG, TREE):
                continue  # rooted in grass: canopies only overhang paving
            colour = np.clip(base + rng.uniform(-12, 12, 3), 0, 255)
            part = sc.new_part(colour, 1.0, 0.0, px, py, r, 2)
            pts = _blob(rng, px, py, r)
            if off_roofs and not sc.is_free(pts, (BUILDING,), avoid_road=False):
                continue
            sc.paint(pts, TREE, part, over=(LOWVEG, IMP, TREE, CLUTTER))
            sc.casters.append((TREE, pts, rng.uniform(5, 14)))


def _clutter(sc, target):
    """Irregular water / dirt / odd patches on grass and yards."""
    rng = sc.rng
    for _ in range(int(200 * sc.scale) + 20):
        if sc.share(CLUTTER) >= target:
            return
        x, y = rng.uniform(0, sc.w), rng.uniform(0, sc.h)
        if sc.label[int(y), int(x)] not in (LOWVEG, IMP) or sc.road[int(y), int(x)]:
            continue
        kind = rng.uniform()
        colour = ((58, 92, 128) if kind < 0.4 else (138, 112, 82) if kind < 0.8
                  else rng.uniform(40, 220, 3))
        part = sc.new_part(np.clip(np.array(colour) + rng.uniform(-12, 12, 3), 0, 255))
        pts = _blob(rng, x, y, rng.uniform(8, 32), int(rng.integers(7, 13)), 0.45)
        sc.paint(pts, CLUTTER, part, over=(LOWVEG, IMP), off_road=True)


def _car_colour(rng):
    if rng.uniform() < 0.8:
        base = np.array(CAR_COLOURS[rng.integers(len(CAR_COLOURS))], np.float64)
        return np.clip(base + rng.uniform(-10, 10, 3), 0, 255)
    return rng.uniform(30, 230, 3)


def _car_row(sc, x, y, ang, step_ang, n):
    """Up to ``n`` cars from (x, y), stepping along ``step_ang``, each along ``ang``."""
    rng = sc.rng
    for _ in range(n):
        length, width = rng.uniform(17, 23), rng.uniform(8, 10.5)
        a = ang + rng.normal(0, 0.03)
        pts = _rect(x, y, length, width, a)
        if sc.is_free(_rect(x, y, length + 2, width + 2, a), (BUILDING, LOWVEG, TREE, CAR, CLUTTER),
                      avoid_road=False):
            part = sc.new_part(_car_colour(rng), 1.0, a, x, y, length / 2, 3)
            sc.paint(pts, CAR, part, over=(IMP,))
        gap = (length if abs(math.cos(step_ang - ang)) > 0.5 else width) + rng.uniform(2, 8)
        x, y = x + gap * math.cos(step_ang), y + gap * math.sin(step_ang)


def _cars(sc, target):
    """Rows of cars parked along road sides and in yards."""
    rng = sc.rng
    for _ in range(int(300 * sc.scale) + 30):
        if sc.share(CAR) >= target:
            return
        n = int(rng.integers(1, 8))
        if rng.uniform() < 0.7:
            on_road = _road_point(sc, -7)
            if on_road:
                _car_row(sc, *on_road, on_road[2], n)
        else:
            x, y = rng.uniform(0, sc.w), rng.uniform(0, sc.h)
            if sc.label[int(y), int(x)] != IMP or sc.road[int(y), int(x)]:
                continue
            ang = sc.parts[sc.part[int(y), int(x)]][2] + rng.choice([0, math.pi / 2])
            _car_row(sc, x, y, ang + math.pi / 2, ang, n)  # side by side


def build_scene(rng, w, h):
    """Lay out one tile: roads, buildings with yards, trees, clutter, cars."""
    sc = _Scene(rng, w, h)
    _roads(sc)
    target = rng.uniform(0.21, 0.33)
    for _ in range(int(300 * sc.scale) + 30):
        if sc.share(BUILDING) >= target:
            break
        _building(sc)
    _lots(sc, rng.uniform(0.27, 0.33))
    _trees(sc, rng.uniform(0.18, 0.27))
    _clutter(sc, rng.uniform(0.008, 0.022))
    _cars(sc, rng.uniform(0.01, 0.02))
    return sc


# ----------------------------------------------------------------- the context scene
#
# Where context decides: most roofs are flat and paved like the streets
# (same colour distribution, same texture fields), so inside a roof the
# image looks like a road or a parking lot; only the parapet, the shadow and
# the layout around (a yard or grass between roof and street; a lot opens
# onto a street and holds rows of cars) tell them apart.

CONTEXT_SIDES = (70, 118)      # roof and lot sides: interiors far from cues, whole in a 128-px crop
PAVED_ROOF = 0.8               # share of roofs paved like the streets (the rest: suburb roofs)
HOUSE_SIDES = (36, 56)         # the other roofs: small, so no pixel of theirs is far from an edge
PAVING_DRIFT = 0.15            # paving's slow brightness drift (either way): many greys along one street
SHADOW_MAX = 16                # px: the longest building shadow
CLEARANCE = 20                 # px between a roof and a lot: no building shadow reaches into a lot
LOT_ODDS = 0.25                # share of plots that are parking lots


def _paving(rng):
    """The one colour distribution of every paved surface in the context
    scene: streets, lots, yards and paved roofs alike."""
    return _grey(rng, 112, 145)


def _grid_roads(sc):
    """A street grid roughly on the tile axes: streets 22-36 px wide and at
    least one main road 52-68 px wide, each its own paving; main roads are
    laid last, so no street's seam crosses them. Segments span the tile."""
    rng = sc.rng
    roads = []
    for vertical, extent in ((True, sc.w), (False, sc.h)):
        n = max(1, int(round(extent / rng.uniform(300, 400))))
        for k in range(n):
            at = (k + rng.uniform(0.3, 0.7)) * extent / n
            main = rng.uniform() < 0.6
            width = rng.uniform(56, 76) if main else rng.uniform(22, 36)
            roads.append((main, width, vertical, at, float(np.clip(rng.normal(0, 0.015), -0.03, 0.03))))
    if not any(r[0] for r in roads):
        k = int(rng.integers(len(roads)))
        roads[k] = (True, rng.uniform(56, 76)) + roads[k][2:]
    for main, width, vertical, at, tilt in sorted(roads, key=lambda r: r[0]):
        ang = (math.pi / 2 if vertical else 0.0) + tilt
        half = (sc.h if vertical else sc.w) / 2 + 60
        mx, my = (at, sc.h / 2) if vertical else (sc.w / 2, at)
        part = sc.new_part(_paving(rng))
        sc.paint(_rect(mx, my, 2 * half, width, ang), IMP, part, road=True)
        sc.roads.append((mx - half * math.cos(ang), my - half * math.sin(ang),
                         mx + half * math.cos(ang), my + half * math.sin(ang), width))
        sc.road_parts.append(part)


def _sides(rng):
    """(length, width) of a roof or lot, each in CONTEXT_SIDES."""
    lo, hi = CONTEXT_SIDES
    return rng.uniform(lo, hi), rng.uniform(lo, hi)


def _unpaved(sc, pts):
    """True if the polygon holds only grass, trees and road (no roof, yard,
    lot, car or clutter)."""
    reg = _poly_region(pts, sc.h, sc.w)
    if reg is None:
        return False
    sl, m = reg
    lab = sc.label[sl][m]
    return not ((lab == BUILDING) | (lab == CAR) | (lab == CLUTTER) | ((lab == IMP) & ~sc.road[sl][m])).any()


_COLOURED_ROOFS = tuple(c for c, _ in ROOFS if c is not None)
_COLOURED_ROOF_ODDS = np.array([p for c, p in ROOFS if c is not None]) / sum(p for c, p in ROOFS if c is not None)


def _context_building(sc, front, along, normal, rw, street):
    """A building set back from the street whose centre line passes through
    ``front`` along ``along``: grass or a paved yard around it, often a path
    to the street; a paved roof with a parapet (most) or a suburb roof.
    Returns the frontage it takes (px along the street), or None."""
    rng = sc.rng
    paved = rng.uniform() < PAVED_ROOF
    length, width = _sides(rng) if paved else rng.uniform(*HOUSE_SIDES, 2)
    verge, margin = rng.uniform(8, 20), rng.uniform(8, 16)   # together >= SHADOW_MAX: no shadow on the street
    ang = math.atan2(along[1], along[0])
    c = front + along * (margin + length / 2) + normal * (rw / 2 + verge + margin + width / 2)
    cx, cy = c
    ang += float(np.clip(rng.normal(0, 0.02), -0.03, 0.03))   # tilted at most 0.06 rad: 118 px fit in 125
    yard = _rect(cx, cy, length + 2 * margin, width + 2 * margin, ang)
    clear = max(margin, CLEARANCE)
    if not (sc.is_free(_rect(cx, cy, length + 2 * margin + 8, width + 2 * margin + 8, ang), (BUILDING,))
            and _unpaved(sc, _rect(cx, cy, length + 2 * clear, width + 2 * clear, ang))):
        return None
    if rng.uniform() < 0.2:   # a paved yard all round; else grass
        sc.paint(yard, IMP, sc.new_part(_paving(rng), angle=ang), over=(LOWVEG,))
    if rng.uniform() < 0.5:   # a path or driveway to the street
        reach = verge + margin + 4
        p = c - normal * (width / 2 + reach / 2) + along * rng.uniform(-0.3, 0.3) * length
        sc.paint(_rect(p[0], p[1], rng.uniform(8, 16), reach + 2, ang), IMP,
                 sc.new_part(_paving(rng), angle=ang), over=(LOWVEG,))
    wing = (cx, cy, length, width, ang)
    if paved:
        rim = rng.uniform(1.5, 2.5)
        tone = rng.uniform(1.2, 1.4) if rng.uniform() < 0.5 else rng.uniform(0.55, 0.75)
        colour = _paving(rng)
        sc.paint(_rect(*wing), BUILDING, sc.new_part(np.clip(colour * tone, 0, 255), 1.0, ang, cx, cy))
        sc.paint(_rect(cx, cy, length - 2 * rim, width - 2 * rim, ang), BUILDING,
                 sc.new_part(colour, 1.0, ang, cx, cy, 1.0, 4), over=(BUILDING,))
        height = rng.uniform(8, SHADOW_MAX)
    else:
        k = rng.choice(len(_COLOURED_ROOFS), p=_COLOURED_ROOF_ODDS)
        colour = np.clip(np.array(_COLOURED_ROOFS[k]) + rng.uniform(-14, 14, 3), 0, 255)
        _roof(sc, wing, colour, rng.uniform() < 0.7)
        height = rng.uniform(8, SHADOW_MAX)
    sc.casters.append((BUILDING, _rect(*wing), height))
    return length + 2 * margin


def _lot(sc, front, along, normal, rw, street):
    """A parking lot opening onto the street (as ``_context_building``),
    paved like it, with a row of cars side by side along its far edge (and
    a second row across an aisle in some deep lots); no markings. Returns
    the frontage it takes, or None."""
    rng = sc.rng
    length, depth = _sides(rng)
    ang = math.atan2(along[1], along[0])
    c = front + along * (length / 2) + normal * (rw / 2 + depth / 2 - 2)
    pts = _rect(c[0], c[1], length, depth, ang)
    if not (sc.is_free(_rect(c[0], c[1], length + 2 * CLEARANCE, depth + 2 * CLEARANCE, ang), (BUILDING,),
                       avoid_road=False) and _unpaved(sc, pts)):
        return None
    sc.paint(pts, IMP, street, over=(LOWVEG, TREE))   # the street's own paving: no seam
    occupied = rng.uniform(0.35, 0.85)
    rows = [depth / 2 - rng.uniform(2, 4)]                   # along the far edge, noses out
    if depth > 100 and rng.uniform() < 0.3:
        rows.append(rows[0] - rng.uniform(42, 48))           # a second row, across an aisle
    for end in rows:
        pitch = rng.uniform(11.5, 14)
        n = int((length - 8) // pitch)
        for i in range(n):
            if rng.uniform() >= occupied:
                continue
            clen, cw = rng.uniform(17, 22), rng.uniform(8, 10.5)
            x, y = c + along * ((i - (n - 1) / 2) * pitch) + normal * (end - clen / 2)
            a = ang + math.pi / 2 + rng.normal(0, 0.04)
            part = sc.new_part(_car_colour(rng), 1.0, a, x, y, clen / 2, 3)
            sc.paint(_rect(x, y, clen, cw, a), CAR, part, over=(IMP,))
    return length


def _frontages(sc):
    """Plots along both sides of every street, in a random order of sides:
    buildings (in yards or grass) and parking lots, with gaps of grass."""
    rng = sc.rng
    sides = [(seg, part, side) for seg, part in zip(sc.roads, sc.road_parts) for side in (-1, 1)]
    for k in rng.permutation(len(sides)):
        (ax, ay, bx, by, rw), street, side = sides[k]
        length = math.hypot(bx - ax, by - ay)
        along = np.array([bx - ax, by - ay]) / length
        normal = np.array([-along[1], along[0]]) * side
        t, place = rng.uniform(0, 40), None
        while t < length:
            if place is None:   # a kind of plot is tried on until it fits
                place, tries = (_lot if rng.uniform() < LOT_ODDS else _context_building), 0
            used = place(sc, np.array([ax, ay]) + along * t, along, normal, rw, street)
            tries += 1
            if used is None:
                t += rng.uniform(12, 20)
                place = None if tries >= 8 else place
            else:
                t += used + rng.uniform(4, 24)
                place = None


def _street_trees(sc):
    """Trees on the verges, their canopies over the street's edge."""
    rng = sc.rng
    for ax, ay, bx, by, rw in sc.roads:
        length, ang = math.hypot(bx - ax, by - ay), math.atan2(by - ay, bx - ax)
        for side in (-1, 1):
            if rng.uniform() < 0.4:
                continue
            t = rng.uniform(0, 80)
            while t < length:
                r = rng.uniform(10, 20)
                off = side * (rw / 2 + rng.uniform(-2, 8))
                x = ax + t * math.cos(ang) - math.sin(ang) * off
                y = ay + t * math.sin(ang) + math.cos(ang) * off
                t += rng.uniform(50, 160)
                if not (0 <= x < sc.w and 0 <= y < sc.h) or sc.label[int(y), int(x)] not in (LOWVEG, TREE, IMP):
                    continue
                base = np.array((62, 98, 46)) if rng.uniform() < 0.8 else np.array((96, 122, 62))
                colour = np.clip(base + rng.uniform(-12, 12, 3), 0, 255)
                pts = _blob(rng, x, y, r)
                if not sc.is_free(pts, (BUILDING,), avoid_road=False):
                    continue
                sc.paint(pts, TREE, sc.new_part(colour, 1.0, 0.0, x, y, r, 2), over=(LOWVEG, IMP, TREE))
                sc.casters.append((TREE, pts, rng.uniform(5, 12)))


def build_context_scene(rng, w, h):
    """Lay out one tile of the context scene: a street grid, buildings set
    back in yards or grass, parking lots with cars, street trees, trees in
    the gardens, rare clutter, cars along the streets."""
    sc = _Scene(rng, w, h)
    sc.drift = PAVING_DRIFT
    _grid_roads(sc)
    _frontages(sc)
    _street_trees(sc)
    _trees(sc, rng.uniform(0.14, 0.19), off_roofs=True)
    _clutter(sc, rng.uniform(0.004, 0.01))
    _cars(sc, sc.share(CAR) + rng.uniform(0.002, 0.005))
    return sc


# ----------------------------------------------------------------- rendering

def _shadow(sc):
    """(h, w) float32 darkening factor: building and tree shadows cast along
    the sun, each on the classes other than the caster's."""
    import cv2
    masks = {BUILDING: np.zeros((sc.h, sc.w), np.uint8), TREE: np.zeros((sc.h, sc.w), np.uint8)}
    for cls, pts, height in sc.casters:
        swept = cv2.convexHull(np.round(np.vstack([pts, pts + sc.sun * height]) * 16).astype(np.int32))
        cv2.fillConvexPoly(masks[cls], swept, 1, cv2.LINE_8, 4)
    shadow = ((masks[BUILDING] > 0) & (sc.label != BUILDING)) | ((masks[TREE] > 0) & (sc.label != TREE))
    soft = cv2.GaussianBlur(shadow.astype(np.float32), (0, 0), 1.2)
    return 1 - sc.rng.uniform(0.38, 0.52) * soft


def _local(xx, yy, cx, cy, ang):
    """Coordinates along / across a part's axis, relative to its centre."""
    c, s = np.cos(ang), np.sin(ang)
    return (xx - cx) * c + (yy - cy) * s, -(xx - cx) * s + (yy - cy) * c


def _vegetation(sc, noise):
    """Low-vegetation colour field: yellowish to green, with dry patches."""
    rng = sc.rng
    light = np.array((150, 168, 96)) + rng.uniform(-10, 10, 3)
    green = np.array((104, 140, 70)) + rng.uniform(-10, 10, 3)
    dry = np.array((160, 148, 104)) + rng.uniform(-10, 10, 3)
    t = noise['low'][..., None]
    field = light + (green - light) * t
    patch = np.clip((noise['mid2'] - 0.62) * 5, 0, 1)[..., None]
    return field + (dry - field) * patch


def render(sc):
    """RGB uint8 image of a laid-out scene."""
    import cv2
    rng, h, w = sc.rng, sc.h, sc.w
    attrs = np.array([(*c, sh, a, x, y, s, st) for c, sh, a, x, y, s, st in sc.parts], np.float32)
    noise = {k: _value_noise(rng, h, w, cells) for k, cells in
             (('low', rng.uniform(90, 200)), ('low2', 60), ('mid', 22), ('mid2', 40), ('fine', 3))}
    p = sc.part
    lab = sc.label
    img = attrs[p, :3] * attrs[p, 3][..., None]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    u, v = _local(xx, yy, attrs[p, 5], attrs[p, 6], attrs[p, 4])
    style = attrs[p, 8]
    mod = np.ones((h, w), np.float32)
    mod += np.where(style == 1, 0.07 * np.sin(v * (2 * math.pi / 5)), 0)  # roof tile rows
    d = np.hypot(xx - attrs[p, 5], yy - attrs[p, 6]) / attrs[p, 7]          # canopy radius
    lit = ((xx - attrs[p, 5]) * -sc.sun[0] + (yy - attrs[p, 6]) * -sc.sun[1]) / attrs[p, 7]
    tree = 1.08 - 0.35 * d * d + 0.18 * lit + 0.3 * (noise['fine'] - 0.5)
    mod = np.where(style == 2, tree, mod)
    window = (np.abs(u / attrs[p, 7] - 0.3) < 0.14) | (np.abs(u / attrs[p, 7] + 0.62) < 0.1)
    mod = np.where((style == 3) & window, 0.45, mod)
    imp = (lab == IMP) | (lab == CLUTTER) | (style == 4)      # paving, and roofs paved like it
    mod = np.where(imp, 0.9 + 0.2 * noise['low2'] - 0.1 * (noise['mid'] > 0.72), mod)
    img *= mod[..., None]
    if sc.drift:   # weathering: slow changes across all paving, roofs paved like it included
        lum = _value_noise(rng, h, w, 150)[..., None]
        tint = np.stack([_value_noise(rng, h, w, 260) for _ in range(3)], -1)
        img *= np.where(imp[..., None], (1 + 2 * sc.drift * (lum - 0.5)) * (1 + 0.06 * (tint - 0.5)), 1)
    img = np.where((lab == LOWVEG)[..., None], _vegetation(sc, noise), img)
    # roof and car outlines: the rim of each part is a little darker
    edge = cv2.morphologyEx(p.astype(np.float32), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    img *= np.where(edge & ((lab == BUILDING) | (lab == CAR)), 0.82, 1)[..., None]
    img *= (_shadow(sc) * (0.94 + 0.12 * noise['low']))[..., None]
    img = img * rng.uniform(0.88, 1.12) * rng.uniform(0.96, 1.04, 3) + rng.uniform(-6, 6)
    img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.6)
    img += rng.normal(0, rng.uniform(2, 4), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def tile_rng(seed, index, scene='suburb'):
    """The random stream of tile ``index`` (0-based) under ``seed``."""
    key = [_SEED_TAG, seed, index] + ([] if scene == 'suburb' else [SCENES.index(scene)])
    return np.random.default_rng(np.random.SeedSequence(key))


def render_tile(seed, index, width, height, scene='suburb'):
    """(RGB uint8 image, uint8 class map) of one tile of ``scene``."""
    build = build_scene if scene == 'suburb' else build_context_scene
    sc = build(tile_rng(seed, index, scene), width, height)
    return render(sc), sc.label.copy()


# ----------------------------------------------------------------- files

def image_suffix():
    """'.tif' where OpenCV writes LZW TIFF losslessly, else '.png'."""
    import cv2
    probe = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    try:
        ok, buf = cv2.imencode('.tif', probe, [cv2.IMWRITE_TIFF_COMPRESSION, 5])
        back = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if ok else None
    except cv2.error:
        back = None
    return '.tif' if back is not None and np.array_equal(back, probe) else '.png'


def _encode(rgb, suffix):
    import cv2
    params = [cv2.IMWRITE_TIFF_COMPRESSION, 5] if suffix == '.tif' else []
    ok, buf = cv2.imencode(suffix, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError('cannot encode %s' % suffix)
    return buf.tobytes()


def tile_paths(out_dir, index, suffix='.tif'):
    """(image, label, eroded label) paths of tile ``index`` (0-based)."""
    name = TILE_NAME % (index + 1)
    return (os.path.join(out_dir, DIRS[0], name + suffix),
            os.path.join(out_dir, DIRS[1], name + suffix),
            os.path.join(out_dir, DIRS[2], name + '_noBoundary' + suffix))


def hard_path(out_dir, index):
    """The hard-pixel mask of tile ``index`` (0-based): always a PNG."""
    return os.path.join(out_dir, HARD_DIR, TILE_NAME % (index + 1) + '.png')


def hard_mask(labels, hard_distance=HARD_DISTANCE):
    """(H, W) bool: the impervious and building pixels farther than
    ``hard_distance`` px from any other label (labelmaps.hard_pixel_mask)."""
    return hard_pixel_mask(labels, hard_distance, classes=HARD_CLASSES)


def _write_tile(out_dir, index, rgb, labels, suffix, hard):
    """The tile's image, label, eroded label and hard-pixel mask (uint8
    PNG, 255 = hard), all four or none."""
    import cv2
    palette = isprs_palette()
    ok, mask = cv2.imencode('.png', np.where(hard, 255, 0).astype(np.uint8))
    if not ok:
        raise OSError('cannot encode .png')
    data = (_encode(rgb, suffix), _encode(index_to_colour(labels, palette), suffix),
            _encode(index_to_colour(erode_boundaries(labels, ERODE_RADIUS), palette), suffix),
            mask.tobytes())
    with atomic_files(tile_paths(out_dir, index, suffix) + (hard_path(out_dir, index),), 'wb') as files:
        for f, blob in zip(files, data):
            f.write(blob)


def _check_args(n_tiles, tile_size, seed, split, scene, hard_distance):
    if not 1 <= n_tiles <= MAX_TILES:
        raise UsageError('the number of tiles must be in 1..%d, got %d' % (MAX_TILES, n_tiles), 'n_images')
    w, h = tile_size
    if not (MIN_TILE <= w <= MAX_TILE and MIN_TILE <= h <= MAX_TILE):
        raise UsageError('tile_size must be between %dx%d and %dx%d, got %dx%d'
                         % (MIN_TILE, MIN_TILE, MAX_TILE, MAX_TILE, w, h), 'tile_size')
    if not 0 <= seed < 2 ** 63:
        raise UsageError('seed must be in 0..2^63-1, got %d' % seed, 'seed')
    check_split(split)
    if scene not in SCENES:
        raise UsageError('scene must be one of %s, got %r' % (', '.join(SCENES), scene), 'scene')
    check_hard_distance(hard_distance)


def _split_tiles(n_tiles, seed, split):
    """{split: sorted tile indices}: a seeded shuffle cut by the fractions."""
    order = np.random.default_rng(np.random.SeedSequence([_SEED_TAG, seed])).permutation(n_tiles)
    out, start = {}, 0
    for name, count in zip(SPLITS, _split_counts(n_tiles, split)):
        out[name] = sorted(int(i) for i in order[start:start + count])
        start += count
    return out


def _write_lists(out_dir, splits, suffix):
    palette = isprs_palette()
    with atomic_write(os.path.join(out_dir, 'classes.txt')) as f:
        f.write(''.join(n + '\n' for n in palette.names))
    with atomic_write(os.path.join(out_dir, 'palette.txt')) as f:
        f.write('# ISPRS 2D semantic labeling colours: name R G B (black = ignore)\n')
        f.write(''.join('%s %d %d %d\n' % (n, *c) for n, c in zip(palette.names, palette.colours)))
    for name, indices in splits.items():
        with atomic_write(os.path.join(out_dir, name + '.txt')) as f:
            for i in indices:
                image, label, _ = tile_paths('', i, suffix)
                f.write('%s %s\n' % (image, label))


def _split_summary(splits, counts, hard):
    """{split: {tiles, pixels, hard_pixels, hard_share}}: hard_share is the
    share of the split's impervious and building pixels that are hard."""
    out = {}
    for name, indices in splits.items():
        pixels = int(counts[indices].sum()) if indices else 0
        scored = int(counts[indices][:, list(HARD_CLASSES)].sum()) if indices else 0
        n_hard = int(hard[indices].sum()) if indices else 0
        out[name] = {'tiles': len(indices), 'pixels': pixels, 'hard_pixels': n_hard,
                     'hard_share': n_hard / scored if scored else None}
    return out


def make_synthetic_aerial(out_dir, n_tiles=12, tile_size=(1000, 1000), seed=0,
                          split=(0.6, 0.2, 0.2), force=False, show_progress=True,
                          scene='suburb', hard_distance=HARD_DISTANCE, log=None):
    """Write the set; returns a summary dict: scene, classes, counts (pixels
    per class over all tiles), shares, splits ({name: [tile names]}),
    hard_distance, hard ({split: {tiles, pixels, hard_pixels, hard_share}}),
    suffix, seconds. The same summary, less the seconds, is written to
    synth.json. Deterministic given the arguments.

    The set is written into a hidden folder beside ``out_dir`` and moved
    into place once complete (synth.staged_set): an interrupted run leaves
    no partial set, and ``force`` replaces an older set only then. ``log``
    (default stderr) hears of leftovers of an interrupted run removed."""
    _check_args(n_tiles, tile_size, seed, split, scene, hard_distance)
    start = time.monotonic()
    suffix = image_suffix()
    w, h = tile_size
    counts = np.zeros((n_tiles, len(CLASSES)), np.int64)
    hard = np.zeros(n_tiles, np.int64)
    splits = _split_tiles(n_tiles, seed, split)
    with staged_set(out_dir, force, log) as stage:
        for i in progress(range(n_tiles), desc='synth seg', unit='tile', enabled=show_progress):
            rgb, labels = render_tile(seed, i, w, h, scene)
            mask = hard_mask(labels, hard_distance)
            counts[i] = np.bincount(labels.ravel(), minlength=len(CLASSES))
            hard[i] = int(mask.sum())
            _write_tile(stage, i, rgb, labels, suffix, mask)
        _write_lists(stage, splits, suffix)
        total = counts.sum(0)
        summary = {'task': 'seg', 'scene': scene, 'seed': seed, 'tile_size': list(tile_size),
                   'classes': list(CLASSES), 'counts': total, 'shares': total / total.sum(),
                   'splits': {k: [TILE_NAME % (i + 1) for i in v] for k, v in splits.items()},
                   'hard_distance': hard_distance, 'hard_classes': [CLASSES[c] for c in HARD_CLASSES],
                   'hard': _split_summary(splits, counts, hard), 'suffix': suffix}
        atomic_write_json(os.path.join(stage, 'synth.json'), summary)
    summary['seconds'] = time.monotonic() - start
    return summary
