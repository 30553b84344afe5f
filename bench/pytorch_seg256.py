#!/usr/bin/env python3
"""seg256 in PyTorch: the reference side of BENCHMARK.md's headline benchmark.

One training step of adversarial segmentation, the same workload as bench/bench_seg256.cpp:

    logits = G(x), p = sigmoid(logits)
    D step: L_D = 0.5 (BCE(D(x, m), 1) + BCE(D(x, p.detach()), 0))           -> Adam on D
    G step: L_G = BCE(D(x, p), 1) + 100 (BCE(logits, m) + softDice(p, m)), D frozen -> Adam on G

G is pix2pix's U-Net (unet_256 at 256x256: 1 -> 1 channel, ngf 64, batch norm, no dropout), D
the n_layers=3 PatchGAN on (image, mask) pairs, written here from BENCHMARK.md's description.
Adam lr 2e-4, betas (0.5, 0.999), eps 1e-8 (fused on CUDA, PyTorch's fastest). D is frozen in
the G step by requires_grad_(False).

Modes: eager NCHW, eager channels_last, torch.compile, torch.compile(mode="reduce-overhead")
(CUDA graphs); G and D are compiled, the optimizer steps stay eager. Precisions: fp32 (TF32 off
for matmul and cuDNN), tf32 (on), bf16 (autocast; TF32 settings at PyTorch's defaults).
cudnn.benchmark is on in every mode.

Timing, as in bench_seg256: every (batch, precision, mode) row builds fresh networks and
optimizers, rotates --input-sets random input sets (normal images, Bernoulli(0.5) masks), runs
--warmup steps (compilation and CUDA-graph recording happen there), then times --repeats steps
one by one with CUDA events on the current stream and reports the median. Peak memory is
torch.cuda.max_memory_allocated over the row. The table and the JSON keys are bench_seg256's.

--device cpu runs the eager modes on the CPU for a smoke test (steady-clock timing, no memory
figure); the comparison is meant for CUDA.

This is the only file of the project that imports torch: PyTorch is a benchmark reference, not
a dependency.
"""

import argparse
import gc
import importlib
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

MODES = ("eager", "channels_last", "compile", "reduce-overhead")
PRECISIONS = ("fp32", "tf32", "bf16")


# ---------------------------------------------------------------- networks


class UNet(nn.Module):
    """pix2pix's U-Net generator with batch norm and without dropout.

    Level i (0 outermost) has inner width ngf * min(2^i, 8). Down: [LeakyReLU(0.2)] Conv 4x4
    s2 p1 [BN] (no LeakyReLU at level 0, no BN at level 0 and at the innermost level). Up: ReLU,
    ConvTranspose 4x4 s2 p1, [BN] (none at level 0, whose conv alone has a bias and gives the
    logits). Every level but the outermost returns cat(level input, up output) on channels.
    """

    def __init__(self, in_channels=1, out_channels=1, ngf=64, num_downs=8):
        super().__init__()
        self.num_downs = num_downs
        width = [ngf * min(2**i, 8) for i in range(num_downs)]
        outer = [in_channels] + width[:-1]  # channels entering level i
        self.down = nn.ModuleList()
        self.down_norm = nn.ModuleList()
        self.up = nn.ModuleList()
        self.up_norm = nn.ModuleList()
        for i in range(num_downs):
            innermost = i == num_downs - 1
            self.down.append(nn.Conv2d(outer[i], width[i], 4, 2, 1, bias=False))
            self.down_norm.append(
                nn.Identity() if i == 0 or innermost else nn.BatchNorm2d(width[i])
            )
            up_in = width[i] if innermost else 2 * width[i]
            up_out = out_channels if i == 0 else outer[i]
            self.up.append(nn.ConvTranspose2d(up_in, up_out, 4, 2, 1, bias=i == 0))
            self.up_norm.append(nn.Identity() if i == 0 else nn.BatchNorm2d(up_out))

    def forward(self, x):
        level_inputs = []
        h = x
        for i in range(self.num_downs):
            level_inputs.append(h)
            if i > 0:
                h = F.leaky_relu(h, 0.2)
            h = self.down_norm[i](self.down[i](h))
        for i in reversed(range(self.num_downs)):
            h = self.up_norm[i](self.up[i](F.relu(h)))
            if i > 0:
                h = torch.cat([level_inputs[i], h], 1)
        return h


class PatchGAN(nn.Module):
    """pix2pix's n_layers=3 PatchGAN: 4x4 pad-1 convs, 70x70 receptive field, logits per patch."""

    def __init__(self, in_channels=2, ndf=64, n_layers=3):
        super().__init__()
        layers = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2)]
        channels = ndf
        for k in range(1, n_layers + 1):
            out = ndf * min(2**k, 8)
            stride = 2 if k < n_layers else 1
            layers += [
                nn.Conv2d(channels, out, 4, stride, 1, bias=False),
                nn.BatchNorm2d(out),
                nn.LeakyReLU(0.2),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, image, mask):
        return self.net(torch.cat([image, mask], 1))


def init_pix2pix(module, gen):
    """Conv weights N(0, 0.02), BN gamma N(1, 0.02), biases and BN beta 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            with torch.no_grad():
                m.weight.normal_(0.0, 0.02, generator=gen)
                if m.bias is not None:
                    m.bias.zero_()
        elif isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.normal_(1.0, 0.02, generator=gen)
                m.bias.zero_()


def conv_work(g, d, size):
    """MACs per image of one forward of G and of D, counted with forward hooks on a batch-1 CPU
    pass: output pixels x weight elements per conv (input pixels for a transposed conv)."""
    counts = {"g": 0, "d": 0, "g_first": 0, "d_first": 0}

    def hook(key):
        def fn(module, inputs, output):
            if isinstance(module, nn.ConvTranspose2d):
                pixels = inputs[0].shape[2] * inputs[0].shape[3]
            else:
                pixels = output.shape[2] * output.shape[3]
            macs = pixels * module.weight.numel()
            if counts[key] == 0:
                counts[key + "_first"] = macs
            counts[key] += macs

        return fn

    handles = []
    for key, net in (("g", g), ("d", d)):
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                handles.append(m.register_forward_hook(hook(key)))
    with torch.no_grad():
        x = torch.zeros(1, 1, size, size)
        g(x)
        d(x, x)
    for h in handles:
        h.remove()
    return counts


def nominal_flop(w):
    # BENCHMARK.md's convention, as in bench_seg256.cpp: the step's four network passes
    # (G, D real, D fake detached, D fake in the G step), each forward + two backward products.
    return 6.0 * (w["g"] + 3.0 * w["d"])


def executed_flop(w):
    # What the step computes at least (bench_seg256.cpp's conv_work comment derives it).
    return 2.0 * ((3.0 * w["g"] - w["g_first"]) + (8.0 * w["d"] - 2.0 * w["d_first"]))


# ---------------------------------------------------------------- the step


def soft_dice_loss(probs, target, smooth=1.0):
    dims = tuple(range(1, probs.dim()))
    inter = (probs * target).sum(dims)
    denom = probs.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


class Step:
    def __init__(self, g, d, g_fwd, d_fwd, opt_g, opt_d, precision, device_type):
        self.g, self.d = g, d
        self.device_type = device_type
        self.g_fwd, self.d_fwd = g_fwd, d_fwd  # eager modules or their compiled wrappers
        self.opt_g, self.opt_d = opt_g, opt_d
        self.bf16 = precision == "bf16"
        self.ones = self.zeros = None

    def targets(self, score):
        if self.ones is None or self.ones.shape != score.shape:
            self.ones = torch.ones(score.shape, device=score.device, dtype=torch.float32)
            self.zeros = torch.zeros(score.shape, device=score.device, dtype=torch.float32)
        return self.ones, self.zeros

    def __call__(self, image, mask):
        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.g_fwd(image)
            probs = torch.sigmoid(logits)

            for p in self.d.parameters():
                p.requires_grad_(True)
            self.opt_d.zero_grad(set_to_none=True)
            real_score = self.d_fwd(image, mask)
            fake_score = self.d_fwd(image, probs.detach())
            ones, zeros = self.targets(real_score)
            d_loss = 0.5 * (
                F.binary_cross_entropy_with_logits(real_score, ones)
                + F.binary_cross_entropy_with_logits(fake_score, zeros)
            )
        d_loss.backward()
        self.opt_d.step()

        with torch.autocast(self.device_type, dtype=torch.bfloat16, enabled=self.bf16):
            self.opt_g.zero_grad(set_to_none=True)
            seg = F.binary_cross_entropy_with_logits(logits, mask) + soft_dice_loss(probs, mask)
            for p in self.d.parameters():
                p.requires_grad_(False)  # gradients flow through D into G; D gets none
            adv_score = self.d_fwd(image, probs)
            g_loss = 100.0 * seg + F.binary_cross_entropy_with_logits(adv_score, ones)
        g_loss.backward()
        self.opt_g.step()
        for p in self.d.parameters():
            p.requires_grad_(True)
        return d_loss, g_loss


# ---------------------------------------------------------------- one row


def set_precision(precision):
    tf32 = precision == "tf32"
    if precision == "bf16":  # PyTorch's defaults: matmul exact, cuDNN convs TF32
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = True
    else:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32


def run_row(args, device, batch, precision, mode, work):
    row = {"batch": batch, "precision": precision, "mode": mode, "ok": False}
    cuda = device.type == "cuda"
    compiled = mode in ("compile", "reduce-overhead")
    set_precision(precision)
    if compiled:
        # A fresh compile cache per row: no recompile limits reached across rows.
        importlib.import_module("torch._dynamo").reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    gen = torch.Generator().manual_seed(args.seed)
    g = UNet(1, 1, args.ngf, args.num_downs)
    d = PatchGAN(2, args.ndf, 3)
    init_pix2pix(g, gen)
    init_pix2pix(d, gen)
    memory_format = torch.contiguous_format if mode == "eager" else torch.channels_last
    g = g.to(device, memory_format=memory_format).train()
    d = d.to(device, memory_format=memory_format).train()
    adam = dict(lr=2e-4, betas=(0.5, 0.999), eps=1e-8)
    if cuda:
        adam["fused"] = True
    opt_g = torch.optim.Adam(g.parameters(), **adam)
    opt_d = torch.optim.Adam(d.parameters(), **adam)
    if compiled:
        compile_mode = "reduce-overhead" if mode == "reduce-overhead" else None
        g_fwd = torch.compile(g, mode=compile_mode)
        d_fwd = torch.compile(d, mode=compile_mode)
    else:
        g_fwd, d_fwd = g, d
    step = Step(g, d, g_fwd, d_fwd, opt_g, opt_d, precision, device.type)

    data_gen = torch.Generator().manual_seed(args.seed ^ 0x5E9256)
    sets = []
    for _ in range(args.input_sets):
        image = torch.randn(batch, 1, args.size, args.size, generator=data_gen)
        mask = torch.bernoulli(torch.full((batch, 1, args.size, args.size), 0.5), generator=data_gen)
        sets.append(
            (
                image.to(device, memory_format=memory_format),
                mask.to(device, memory_format=memory_format),
            )
        )

    graphs = mode == "reduce-overhead"
    index = 0

    def one_step():
        nonlocal index
        if graphs:
            torch.compiler.cudagraph_mark_step_begin()
        image, mask = sets[index % len(sets)]
        index += 1
        return step(image, mask)

    for _ in range(args.warmup):
        one_step()
    if cuda:
        torch.cuda.synchronize()

    wall_start = time.perf_counter()
    if cuda:
        stream = torch.cuda.current_stream()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(args.repeats)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(args.repeats)]
        for r in range(args.repeats):
            starts[r].record(stream)
            losses = one_step()
            ends[r].record(stream)
        ends[-1].synchronize()
        step_ms = [s.elapsed_time(e) for s, e in zip(starts, ends)]
    else:
        step_ms = []
        for r in range(args.repeats):
            t0 = time.perf_counter()
            losses = one_step()
            step_ms.append((time.perf_counter() - t0) * 1e3)
    wall_ms_mean = (time.perf_counter() - wall_start) * 1e3 / args.repeats

    ms = statistics.median(step_ms)
    images_per_s = batch * 1e3 / ms
    d_loss, g_loss = (float(t.detach().float().item()) for t in losses)
    peak = torch.cuda.max_memory_allocated() if cuda else None
    row.update(
        ok=math.isfinite(d_loss) and math.isfinite(g_loss),
        ms_median=ms,
        ms_min=min(step_ms),
        ms_max=max(step_ms),
        wall_ms_mean=wall_ms_mean,
        step_ms=step_ms,
        images_per_s=images_per_s,
        tflops=nominal_flop(work) * images_per_s * 1e-12,
        tflops_executed=executed_flop(work) * images_per_s * 1e-12,
        peak_mem_bytes=peak,
        peak_mem_mib=peak / 2**20 if peak is not None else None,
        d_loss=d_loss,
        g_loss=g_loss,
    )
    if not cuda:
        row["note"] = "CPU: host memory not tracked"
    if not row["ok"]:
        row["error"] = "non-finite loss after the timed steps"
    return row


# ---------------------------------------------------------------- main


def print_table(rows):
    print(
        f"{'batch':>6}  {'prec':<5}  {'mode':<15}  {'ms/step':>10}  {'min ms':>10}  "
        f"{'images/s':>10}  {'TFLOP/s':>9}  {'peak MiB':>11}  note"
    )
    for r in rows:
        if "ms_median" not in r:
            print(f"{r['batch']:>6}  {r['precision']:<5}  {r['mode']:<15}  failed: {r['error']}")
            continue
        note = "; ".join(x for x in (r.get("note", ""), r.get("error", "")) if x)
        mib = r["peak_mem_mib"]
        print(
            f"{r['batch']:>6}  {r['precision']:<5}  {r['mode']:<15}  {r['ms_median']:>10.3f}  "
            f"{r['ms_min']:>10.3f}  {r['images_per_s']:>10.1f}  {r['tflops']:>9.3g}  "
            f"{(format(mib, '.1f') if mib is not None else '-'):>11}  {note}"
        )


def int_list(text):
    return [int(v) for v in text.split(",") if v]


def name_list(allowed):
    def parse(text):
        values = [v for v in text.split(",") if v]
        for v in values:
            if v not in allowed:
                raise argparse.ArgumentTypeError(f"{v!r} is not one of {', '.join(allowed)}")
        return values

    return parse


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda[:i], or cpu for a smoke test")
    ap.add_argument("--batch", type=int_list, default=[1, 16, 64])
    ap.add_argument("--precision", type=name_list(PRECISIONS), default=list(PRECISIONS))
    ap.add_argument("--modes", type=name_list(MODES), default=list(MODES))
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--input-sets", type=int, default=4)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--ngf", type=int, default=64)
    ap.add_argument("--ndf", type=int, default=64)
    ap.add_argument("--num-downs", type=int, default=0, help="default log2(size), at most 8")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--json", help="write the results as JSON to this file")
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("pytorch_seg256: no CUDA device (--device cpu runs a smoke test)")
    if args.size < 32 or args.size & (args.size - 1):
        sys.exit(f"--size must be a power of two >= 32, got {args.size}")
    if args.num_downs == 0:
        args.num_downs = min(8, args.size.bit_length() - 1)
    if args.repeats < 1 or args.warmup < 0 or args.input_sets < 1:
        sys.exit("--repeats and --input-sets must be >= 1, --warmup >= 0")
    if "reduce-overhead" in args.modes and args.warmup < 3:
        print("note: reduce-overhead records its CUDA graphs in the first steps; use --warmup >= 3")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.backends.cudnn.benchmark = True
    device_name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"

    probe_g = UNet(1, 1, args.ngf, args.num_downs)
    probe_d = PatchGAN(2, args.ndf, 3)
    work = conv_work(probe_g, probe_d, args.size)
    g_params = sum(p.numel() for p in probe_g.parameters())
    d_params = sum(p.numel() for p in probe_d.parameters())
    del probe_g, probe_d

    print(
        f"seg256 (PyTorch {torch.__version__}, cuDNN {torch.backends.cudnn.version()}) on "
        f"{device_name}: {args.size}x{args.size}, G unet num_downs "
        f"{args.num_downs} ngf {args.ngf} ({g_params / 1e6:.2f} M parameters), D n_layers 3 ndf "
        f"{args.ndf} ({d_params / 1e6:.2f} M)"
    )
    print(
        f"conv work per image: G {work['g'] / 1e9:.4g} GMAC, D {work['d'] / 1e9:.4g} GMAC per "
        f"forward; step {nominal_flop(work) / 1e9:.4g} GFLOP nominal (BENCHMARK.md convention), "
        f"{executed_flop(work) / 1e9:.4g} GFLOP executed"
    )
    print(f"warm-up {args.warmup}, median of {args.repeats}, {args.input_sets} input sets")
    if args.repeats < 5:
        print("note: fewer than 5 repeats: a smoke run, not a measurement")
    sys.stdout.flush()

    rows = []
    for batch in args.batch:
        for precision in args.precision:
            for mode in args.modes:
                try:
                    row = run_row(args, device, batch, precision, mode, work)
                except Exception as e:  # one failing mode must not lose the other rows
                    row = {
                        "batch": batch,
                        "precision": precision,
                        "mode": mode,
                        "ok": False,
                        "error": f"{type(e).__name__}: {e}".splitlines()[0][:300],
                    }
                rows.append(row)
                outcome = (
                    f"{row['ms_median']:.3f} ms/step" if "ms_median" in row else "failed: " + row["error"]
                )
                print(f"batch {batch} {precision} {mode}: {outcome}", file=sys.stderr, flush=True)
    print()
    print_table(rows)

    if args.json:
        doc = {
            "tool": "pytorch_seg256",
            "device": device_name,
            "torch": torch.__version__,
            "cudnn": torch.backends.cudnn.version(),
            "size": args.size,
            "num_downs": args.num_downs,
            "ngf": args.ngf,
            "ndf": args.ndf,
            "warmup": args.warmup,
            "repeats": args.repeats,
            "input_sets": args.input_sets,
            "g_params": g_params,
            "d_params": d_params,
            "g_fwd_gmac_per_image": work["g"] / 1e9,
            "d_fwd_gmac_per_image": work["d"] / 1e9,
            "gflop_per_image": nominal_flop(work) / 1e9,
            "gflop_per_image_executed": executed_flop(work) / 1e9,
            "rows": rows,
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
