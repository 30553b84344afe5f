#!/usr/bin/env python3
"""How alike are a mask's axial slices d millimetres apart? (issue 21: the slab gap)

With slab splits of one volume, a test slice next to a training slice is nearly a copy of it.
This prints, for each distance d, the mean and minimum Dice between the mask of slice k and the
mask of slice k + d over the slices that hold foreground: the Dice that "copy the nearest
training slice's mask" would get when the nearest training slice is d slices away. A gap of g
slices between splits puts the nearest training slice g + 1 away.

usage: slice_overlap.py MASK.nii[.gz] [THRESHOLD]   (foreground: value > THRESHOLD, default 0)
Reads uncompressed or gzip NIfTI-1 with the standard library only; slices along the third axis.
"""
import gzip
import struct
import sys


def read_nifti(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 348 or struct.unpack("<i", raw[:4])[0] != 348:
        sys.exit(f"{path}: not a little-endian NIfTI-1 file")
    dims = struct.unpack("<8h", raw[40:56])
    datatype, bitpix = struct.unpack("<hh", raw[70:74])
    offset = int(struct.unpack("<f", raw[108:112])[0])
    codes = {2: "B", 4: "h", 8: "i", 16: "f", 64: "d", 256: "b", 512: "H", 768: "I"}
    if datatype not in codes:
        sys.exit(f"{path}: unsupported NIfTI datatype {datatype}")
    nx, ny, nz = dims[1], dims[2], max(1, dims[3])
    n = nx * ny * nz
    need = offset + n * bitpix // 8
    if len(raw) < need:
        sys.exit(f"{path}: truncated ({len(raw)} bytes, the header describes {need})")
    return (nx, ny, nz), struct.unpack(f"<{n}{codes[datatype]}", raw[offset:need])


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    threshold = float(sys.argv[2]) if len(sys.argv) == 3 else 0.0
    (nx, ny, nz), data = read_nifti(sys.argv[1])
    plane = nx * ny
    slices = [frozenset(i for i in range(plane) if data[k * plane + i] > threshold) for k in range(nz)]
    fg = [k for k in range(nz) if slices[k]]
    if not fg:
        sys.exit(f"{sys.argv[1]}: no voxel above {threshold}")
    print(f"{sys.argv[1]}: {nx}x{ny}x{nz}, foreground in slices {fg[0]}..{fg[-1]} ({len(fg)})")
    print("distance  mean Dice  min Dice  pairs")
    for d in (1, 2, 3, 4, 5, 6, 8, 10, 12):
        dice = [2 * len(slices[k] & slices[k + d]) / (len(slices[k]) + len(slices[k + d]))
                for k in fg if k + d <= fg[-1]]
        print(f"{d:8d}  {sum(dice) / len(dice):9.4f}  {min(dice):8.4f}  {len(dice):5d}")


if __name__ == "__main__":
    main()
