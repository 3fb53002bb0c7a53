#!/usr/bin/env python3
"""Generate extra LOOK-M golden test vectors by running the OFFICIAL reference cache classes.

What it does
------------
Builds seeded inputs (Q, K, V, prefill attention, image layout) for a list of cases and runs
each through the nine KV-cache compression classes of the official LOOK-M code
(`SUSTechBruce/LOOK-M:LLaVA-mix_merge_v1/llava/model/kv_token_merge/modify_llama.py`), for
several `(hh_ratio, recent_ratio)` budgets. The files it writes have exactly the format of
`shared/golden/` (see `shared/golden/README.md`): `lookm_inputs_<case>.json` plus one
`lookm_<method>_<case>.json` per method, and a `README.md` listing the cases and every
skipped run with its reason.

The reference classes are cut out of the git mirror *at run time* with Python's `ast` and get
exactly the three text patches of the golden README (P1 head_dim literal 128 -> head_dim,
P2 575/576 -> IMG_TOKENS-1/IMG_TOKENS, P3 re-inserted `class TextH2OKVCache_LayerWise:`
header). Nothing is copied out of the reference into this repository.

Every run is also recomputed independently from `shared/lookm-spec.md` (selection, cosine
matching, filter, merges); the reference output must agree with it (`reference_vs_spec`), and
kept/evicted indices, merge targets etc. come from that cross-checked recomputation. A run is
skipped (not written) when the reference raises, when `recent_size == 0`, when a sink variant
has `hh_size < 4` (tie order among the +inf sinks is unspecified), or when any decision is
(nearly) tied: a selection boundary gap below 1e-4 for the float32-penalised text-prior scores
or 1e-6 for the other scores (for SnapKV every adjacent gap inside the kept top-k, whose order
is the output order), a cosine maximum within 1e-6 of its runner-up, or a filter mean within
1e-6 of the threshold.

How to run
----------
    pip install torch numpy          # any CPU torch works
    python3 tools/golden/make_cases.py [--mirror DIR] [--out DIR] [--verify-shipped DIR]

Defaults: `--mirror /work/.mirror/SUSTechBruce+LOOK-M/repo` (a git directory holding the
LOOK-M history; `--rev` picks the commit, default HEAD), `--out test/fixtures/golden-extra`
(relative to the repository root). `--verify-shipped ../shared/golden` additionally
regenerates the shipped `mixed40` case into a temporary folder and compares it with the
shipped files, byte for byte and number by number.

The committed vectors were generated single-threaded with Debian bookworm's `python3-torch`
(1.13, reports `1.13.0a0`), the environment of the shipped `mixed40` set; with it `mixed40`
regenerates byte-identically. Other torch builds give float32 results that differ in the last
ulp (BLAS and reduction order), which the runner's 1e-5 tolerance absorbs but a byte
comparison does not.

The outputs are committed, so the tests (`npx tsx tools/golden.ts test/fixtures/golden-extra`)
never need Python or torch.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

REF_PATH = 'LLaVA-mix_merge_v1/llava/model/kv_token_merge/modify_llama.py'
REF_SOURCE = 'SUSTechBruce/LOOK-M:' + REF_PATH
DEFAULT_MIRROR = '/work/.mirror/SUSTechBruce+LOOK-M/repo'
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_OUT = os.path.join(REPO_ROOT, 'test', 'fixtures', 'golden-extra')

PATCH_P1 = 'P1 head_dim literal 128 -> head_dim'
PATCH_P2 = 'P2 575/576 -> IMG_TOKENS-1/IMG_TOKENS'
PATCH_P3 = 'P3 missing class header re-inserted'

GAP_TEXT_PRIOR = 1e-4  # float32 scores carrying the -65516 penalty have a resolution of ~0.004
GAP_OTHER = 1e-6
COS_GAP = 1e-6
FILTER_GAP = 1e-6
SINKS = 4

# method, kv_mode, reference class, selection rule, merge rule
METHODS = [
    ('h2o', 'h2o', 'H2OKVCache_LayerWise', 'h2o', None),
    ('snapkv', 'snapkv', 'PoolingKVCache_LayerWise', 'snapkv', None),
    ('pivot_merge', 'pivot_merge', 'PivotKVCache_LayerWise', 'sinks', 'pivot'),
    ('avg_merge', 'avg_merge', 'AVGMergeKVCache_LayerWise', 'sinks', 'avg'),
    ('weighted_merge', 'weighted_merge', 'WeightedMergeKVCache_LayerWise', 'sinks', 'weighted'),
    ('text_prior', 'text_prior_h2o', 'TextH2OKVCache_LayerWise', 'text', None),
    ('text_prior_pivot_merge', 'text_prior_pivot_merge', 'TextPivotMerge_LayerWise', 'text', 'pivot'),
    ('text_prior_avg_merge', 'text_prior_avg_merge', 'TextAVGMergeKVCache_LayerWise', 'text', 'avg'),
    ('text_prior_weighted_merge', 'text_prior_weighted_merge', 'TextWeightedMerge_LayerWise', 'text', 'weighted'),
]

README_BUDGETS = [(0.1, 0.1), (0.4, 0.1), (0.3, 0.2), (0.5, 0.5)]

# The shipped case, used only by --verify-shipped.
MIXED40 = dict(name='mixed40', seed=1234, heads=4, head_dim=8, img_tokens=8,
               segments=[['t', 5], ['i', 8], ['t', 3], ['i', 8], ['t', 2], ['i', 8], ['t', 6]],
               budgets=README_BUDGETS)

# Shapes are small on purpose: every method file repeats K, V and the outputs of every run.
CASES = [
    # one 12-token image, D=16; 0.1/0.1 gives hh=3 (< 4 sinks: sink variants skipped)
    dict(name='img1x12_L30_d16', seed=7, heads=2, head_dim=16, img_tokens=12,
         segments=[['t', 6], ['i', 12], ['t', 12]],
         budgets=[(0.1, 0.1), (0.25, 0.15)]),
    # four 6-token images, little text: text-prior fills hh with images at 0.4/0.1 and 0.3/0.2
    dict(name='img4x6_L40', seed=2024, heads=2, head_dim=8, img_tokens=6,
         segments=[['t', 2], ['i', 6], ['t', 1], ['i', 6], ['t', 2], ['i', 6], ['t', 1], ['i', 6], ['t', 10]],
         budgets=[(0.1, 0.1), (0.4, 0.1), (0.3, 0.2)]),
    # two 6-token images, 3 heads
    dict(name='img2x6_L30_h3', seed=42, heads=3, head_dim=8, img_tokens=6,
         segments=[['t', 3], ['i', 6], ['t', 5], ['i', 6], ['t', 10]],
         budgets=[(0.2, 0.1), (0.15, 0.3)]),
    # text, then one image at the very end: the non-recent text alone exceeds hh (budget
    # exceeded); at 0.1/0.1 two image tokens are old and evicted, at 0.2/0.2 the whole image is
    # in the recent window, so text-prior evicts nothing (E = 0, output = input)
    dict(name='text_tail_L40', seed=99, heads=2, head_dim=8, img_tokens=6,
         segments=[['t', 34], ['i', 6]],
         budgets=[(0.1, 0.1), (0.2, 0.2)]),
    # three 6-token images, 6 heads; text-prior selects 3 images per head
    dict(name='img3x6_L30_h6', seed=3, heads=6, head_dim=8, img_tokens=6,
         segments=[['t', 2], ['i', 6], ['t', 2], ['i', 6], ['t', 2], ['i', 6], ['t', 6]],
         budgets=[(0.4, 0.1)]),
    # odd length: 0.5/0.5 gives hh+rc = L-1, so it compresses by one slot (E = 1)
    dict(name='img1x16_L33', seed=5, heads=2, head_dim=8, img_tokens=16,
         segments=[['t', 5], ['i', 16], ['t', 12]],
         budgets=[(0.5, 0.5), (0.15, 0.3)]),
    # an image at position 0 (the sinks are image tokens) and an image cut by the recent window
    dict(name='img3x6_L48_edge', seed=11, heads=2, head_dim=8, img_tokens=6,
         segments=[['i', 6], ['t', 8], ['i', 6], ['t', 16], ['i', 6], ['t', 6]],
         budgets=[(0.1, 0.2), (0.25, 0.15)]),
    # the longest case: four 16-token images in 80 tokens, the last one cut by the window
    dict(name='img4x16_L80', seed=31337, heads=2, head_dim=8, img_tokens=16,
         segments=[['t', 4], ['i', 16], ['t', 2], ['i', 16], ['t', 2], ['i', 16], ['t', 2], ['i', 16], ['t', 6]],
         budgets=[(0.1, 0.1), (0.3, 0.2)]),
]


# ------------------------------------------------------------------------------------------
# Reference extraction


def load_reference(mirror: str, rev: str):
    """Cuts the cache classes out of the mirror's modify_llama.py with `ast`, applies P1-P3,
    and executes them in a private namespace. Returns (namespace, commit, patches per class)."""
    commit = subprocess.run(['git', '-C', mirror, 'rev-parse', rev], check=True, capture_output=True, text=True).stdout.strip()
    src = subprocess.run(['git', '-C', mirror, 'show', f'{commit}:{REF_PATH}'], check=True, capture_output=True, text=True).stdout
    lines = src.splitlines(keepends=True)
    tree = ast.parse(src)
    wanted = {m[2] for m in METHODS} - {'TextH2OKVCache_LayerWise'}
    sources = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef):
            continue
        if node.name in wanted:
            sources[node.name] = ''.join(lines[node.lineno - 1:node.end_lineno])
        if node.name == 'MeanH2OKVCache_LayerWise':
            # The text-prior methods sit, without their class header, at the end of this class
            # body: a second __init__/__call__/_update_hh_score/_clean_scores set (lookm-spec §8.2).
            funcs = [f for f in node.body if isinstance(f, ast.FunctionDef)]
            inits = [i for i, f in enumerate(funcs) if f.name == '__init__']
            if len(inits) != 2:
                raise RuntimeError('expected two __init__ in MeanH2OKVCache_LayerWise (orphaned text-prior methods)')
            orphan = funcs[inits[1]:]
            if [f.name for f in orphan] != ['__init__', '__call__', '_update_hh_score', '_clean_scores'] or orphan[0].decorator_list:
                raise RuntimeError('unexpected orphaned methods in MeanH2OKVCache_LayerWise')
            body = ''.join(lines[orphan[0].lineno - 1:node.end_lineno])
            sources['TextH2OKVCache_LayerWise'] = 'class TextH2OKVCache_LayerWise:\n' + body  # P3
    missing = {m[2] for m in METHODS} - set(sources)
    if missing:
        raise RuntimeError(f'classes not found in {REF_PATH}: {sorted(missing)}')

    ns = {'torch': torch, 'nn': torch.nn, 'F': torch.nn.functional, 'math': math, 'IMG_TOKENS': None}
    applied = {}
    for name, code in sources.items():
        patches = []
        n1 = code.count('.repeat(1, 1, 1, 128)')
        if n1:
            code = code.replace('.repeat(1, 1, 1, 128)', '.repeat(1, 1, 1, head_dim)')
            patches.append('P1')
        n2a, n2b = code.count('575 * i'), code.count('+576]')
        if n2a or n2b:
            if n2a != 1 or n2b != 1:
                raise RuntimeError(f'{name}: unexpected 575/576 occurrences ({n2a}, {n2b})')
            code = code.replace('575 * i', '(IMG_TOKENS-1) * i').replace('+576]', '+IMG_TOKENS]')
            patches.append('P2')
        if name == 'TextH2OKVCache_LayerWise':
            patches.append('P3')
        left = {n.value for n in ast.walk(ast.parse(code)) if isinstance(n, ast.Constant) and n.value in (128, 575, 576)}
        if left:
            raise RuntimeError(f'{name}: hard-coded {sorted(left)} left after patching')
        exec(compile(code, f'<{REF_PATH}@{commit[:7]}:{name}>', 'exec'), ns)
        applied[name] = patches
    for cls, rule in [(m[2], m[3]) for m in METHODS]:
        if m_merge(cls) and 'P1' not in applied[cls]:
            raise RuntimeError(f'{cls}: P1 did not apply')
        if rule == 'text' and 'P2' not in applied[cls]:
            raise RuntimeError(f'{cls}: P2 did not apply')
    return ns, commit, applied


def m_merge(cls: str) -> bool:
    return next(m[4] for m in METHODS if m[2] == cls) is not None


def run_reference(ns, cls_name, rule, T, placeholders, hh_ratio, recent_ratio, Q, K, V, attn):
    ns['IMG_TOKENS'] = T
    cls = ns[cls_name]
    with contextlib.redirect_stdout(io.StringIO()):
        if rule == 'snapkv':
            cache = cls(hh_size=200, recent_size=200, k_seq_dim=2, v_seq_dim=2, hh_ratio=hh_ratio,
                        recent_ratio=recent_ratio, kernel_size=5, pooling='avgpool')
        else:
            cache = cls(hh_size=200, recent_size=200, k_seq_dim=2, v_seq_dim=2, hh_ratio=hh_ratio,
                        recent_ratio=recent_ratio)
        cache.image_position = torch.tensor(placeholders)
        if rule == 'snapkv':
            out = cache((K.clone(), V.clone()), Q.clone(), attn.detach().clone(), None)
        else:
            out = cache((K.clone(), V.clone()), attn.detach().clone())
    return out[0], out[1]


# ------------------------------------------------------------------------------------------
# Inputs


def build_inputs(case):
    H, D, T, seed = case['heads'], case['head_dim'], case['img_tokens'], case['seed']
    mask, placeholders = [], []
    for kind, n in case['segments']:
        if kind == 'i':
            if n != T:
                raise ValueError(f"{case['name']}: image segment of {n} tokens, img_tokens is {T}")
            i = len(placeholders)
            placeholders.append(len(mask) - (T - 1) * i)  # position in the un-expanded ids
            mask += [1] * n
        elif kind == 't':
            mask += [0] * n
        else:
            raise ValueError(kind)
    L = len(mask)
    for i, p in enumerate(placeholders):  # the reference's span rule
        start = p + (T - 1) * i
        assert all(mask[start:start + T]) and len(mask[start:start + T]) == T
    g = torch.Generator().manual_seed(seed)
    Q = torch.randn(1, H, L, D, generator=g)
    K = torch.randn(1, H, L, D, generator=g)
    V = torch.randn(1, H, L, D, generator=g)
    causal = torch.full((L, L), torch.finfo(torch.float32).min).triu(1)
    attn = torch.softmax(torch.matmul(Q, K.transpose(2, 3)) / math.sqrt(D) + causal, dim=-1, dtype=torch.float32)
    colsum = attn.sum(0).sum(1)
    return dict(H=H, D=D, T=T, L=L, mask=mask, placeholders=placeholders, Q=Q, K=K, V=V, attn=attn, colsum=colsum)


# ------------------------------------------------------------------------------------------
# Independent recomputation from lookm-spec.md


class Skip(Exception):
    pass


def boundary(sorted_desc, k):
    """Gap between the k-th selected and the first rejected score; None without a boundary."""
    if k <= 0 or k >= len(sorted_desc):
        return None
    return float(sorted_desc[k - 1]) - float(sorted_desc[k])


def select(rule, inp, hh, rc):
    """Per-head kept positions (ascending; SnapKV: top-k order then window) and the gap."""
    H, L = inp['H'], inp['L']
    S = inp['colsum'].numpy()  # float32 [H, L], bit-identical to the classes' hh_score
    n_cand = L - rc
    kept, gaps, extra = [], [], {}
    recent = list(range(L - rc, L))
    if rule in ('h2o', 'sinks'):
        for h in range(H):
            cand = S[h, :n_cand].copy()
            if rule == 'sinks':
                cand[:SINKS] = np.inf
            order = sorted(range(n_cand), key=lambda j: (-cand[j], j))
            vals = cand[order]
            if rule == 'sinks' and hh <= SINKS:
                gap = None  # only sinks are taken
            else:
                gap = boundary(vals, hh)
            gaps.append(gap)
            kept.append(sorted(order[:hh]) + recent)
        limit = GAP_OTHER
    elif rule == 'text':
        img = np.array(inp['mask'], dtype=bool)
        pen = np.where(img, np.float32(-65516), np.float32(0)).astype(np.float32)
        pen[L - rc:] = np.float32(-65516)
        text_nr = [j for j in range(n_cand) if not img[j]]
        n_img = max(0, hh - len(text_nr))
        for h in range(H):
            P = (S[h] + pen)[:n_cand]  # float32 add, as the class does
            order = sorted(range(n_cand), key=lambda j: (-P[j], j))
            gaps.append(boundary(P[order], hh))
            # spec §5.3: all non-recent text + top images by RAW score + window
            imgs = sorted([j for j in range(n_cand) if img[j]], key=lambda j: (-S[h, j], j))
            keep = sorted(text_nr + imgs[:n_img]) + recent
            # the class: keep = (P with top-k and window zeroed) >= 0
            P2 = S[h] + pen
            P2[order[:hh]] = 0
            P2[L - rc:] = 0
            if [j for j in range(L) if P2[j] >= 0] != keep:
                raise Skip('penalised top-k differs from the raw-score image ranking')
            kept.append(keep)
        extra = dict(n_text_nonrecent=len(text_nr), n_image_selected=n_img)
        limit = GAP_TEXT_PRIOR
    elif rule == 'snapkv':
        Q, K = inp['Q'], inp['K']
        D = inp['D']
        # the same torch operations as PoolingKVCache_LayerWise, to report its pooled scores
        w = torch.matmul(Q[..., -rc:, :], K.transpose(2, 3)) / math.sqrt(D)
        m = torch.full((rc, rc), torch.finfo(w.dtype).min)
        c = torch.arange(m.size(-1))
        m.masked_fill_(c < (c + 1).view(m.size(-1), 1), 0)
        w[:, :, -rc:, -rc:] += m[None, None, :, :]
        w = torch.softmax(w, dim=-1, dtype=torch.float32)
        s = w[:, :, -rc:, :-rc].sum(dim=-2)
        pooled = torch.nn.functional.avg_pool1d(s, kernel_size=5, padding=2, stride=1)
        p = pooled[0].numpy()
        for h in range(H):
            order = sorted(range(n_cand), key=lambda j: (-p[h, j], j))
            vals = p[h][order]
            gaps.append(boundary(vals, hh))
            # the output order is the top-k order: every adjacent gap inside it must be clear
            inner = [float(vals[i]) - float(vals[i + 1]) for i in range(min(hh, n_cand - 1))]
            if inner and min(inner) < GAP_OTHER:
                raise Skip(f'snapkv pooled scores tied inside the top-k (gap {min(inner):.2e})')
            kept.append(order[:hh] + recent)
        extra = dict(pooled=pooled[0])
        limit = GAP_OTHER
    real = [g for g in gaps if g is not None]
    gap = min(real) if real else None
    if gap is not None and gap < limit:
        raise Skip(f'selection boundary tie (gap {gap:.2e} < {limit:g})')
    return kept, gap, extra


def cosine_match(inp, kept, evicted):
    """The classes' key-cosine matching, same torch expression (lookm-spec §5.4)."""
    K = inp['K']
    H, D = inp['H'], inp['D']
    Kk = torch.stack([K[0, h, kept[h]] for h in range(H)])[None]
    Ke = torch.stack([K[0, h, evicted[h]] for h in range(H)])[None]
    sim = (Ke / torch.norm(Ke, dim=-1).unsqueeze(-1).repeat(1, 1, 1, D)) @ (
        (Kk / (torch.norm(Kk, dim=-1).unsqueeze(-1).repeat(1, 1, 1, D))).transpose(-1, -2))
    smax, t = sim.max(dim=-1)
    if sim.shape[-1] > 1:
        top2 = sim.topk(2, dim=-1).values
        close = (top2[..., 0] - top2[..., 1]).min().item()
        if close < COS_GAP:
            raise Skip(f'cosine maximum tied with its runner-up (gap {close:.2e})')
    return smax, t


def spec_merge(kind, inp, kept, evicted, smax, t, filt):
    """Sequential float32 recomputation of pivot / avg (with the reference bug) / weighted merge."""
    H = inp['H']
    outs = []
    for name in ('K', 'V'):
        X = inp[name][0].numpy()
        res = []
        for h in range(H):
            keep = X[h, kept[h]].astype(np.float32)
            ev = X[h, evicted[h]].astype(np.float32)
            acc = keep.copy()
            cnt = np.ones(len(kept[h]), dtype=np.float32)
            tt = t[0, h].numpy()
            ss = smax[0, h].numpy()
            if kind == 'pivot':
                for e in range(len(evicted[h])):
                    n = tt[e]
                    acc[n] = acc[n] + (ev[e] + keep[n]) / np.float32(2)
                    cnt[n] += 1
            else:
                F = [e for e in range(len(evicted[h])) if filt[e]]
                for k, e in enumerate(F):
                    n = tt[e]
                    if kind == 'avg':
                        acc[n] = acc[n] + ev[k]  # the reference's unfiltered source row (spec §5.7)
                    elif kind == 'avg_intended':
                        acc[n] = acc[n] + ev[e]
                    else:
                        acc[n] = acc[n] + ss[e] * ev[e]
                    cnt[n] += 1
            res.append(acc / cnt[:, None])
        outs.append(np.stack(res)[None])
    return outs


# ------------------------------------------------------------------------------------------
# JSON encoding


def f32(x) -> float:
    """The shortest decimal that round-trips the float32 value, as a Python float."""
    return float(str(np.float32(x)))


def tensor(t) -> dict:
    a = t.detach().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
    a = np.ascontiguousarray(a, dtype=np.float32)
    return {'shape': list(a.shape), 'dtype': 'float32', 'data': [f32(x) for x in a.ravel()]}


def dump(path, obj):
    with open(path, 'w') as fh:
        fh.write(json.dumps(obj, separators=(',', ':'), allow_nan=False))


# ------------------------------------------------------------------------------------------
# One run


def make_run(ns, method, inp, hh_ratio, recent_ratio):
    name, kv_mode, cls_name, rule, merge = method
    L, H = inp['L'], inp['H']
    hh, rc = int(L * hh_ratio), int(L * recent_ratio)
    if rc == 0:
        raise Skip('recent_size 0')
    if rule == 'sinks' and L > hh + rc and hh < SINKS:
        raise Skip(f'hh_size {hh} < 4 sinks (tie order among +inf sinks unspecified)')
    try:
        ok, ov = run_reference(ns, cls_name, rule, inp['T'], inp['placeholders'], hh_ratio, recent_ratio,
                               inp['Q'], inp['K'], inp['V'], inp['attn'])
    except Exception as error:  # noqa: BLE001 - any reference failure means: no golden run
        raise Skip(f'reference raised {type(error).__name__}: {error}') from None
    run = dict(hh_ratio=hh_ratio, recent_ratio=recent_ratio, hh_size=hh, recent_size=rc, cache_size=hh + rc,
               compressed=ok.shape[2] != L, reference_vs_spec=None, min_boundary_score_gap=None)

    runs_selection = L >= hh + rc if rule == 'snapkv' else L > hh + rc
    if not runs_selection:
        if not (torch.equal(ok, inp['K']) and torch.equal(ov, inp['V'])):
            raise RuntimeError(f'{name}: expected the cache unchanged at L <= hh+rc')
        run.update(reference_vs_spec='bit-exact', outputs=dict(keys=tensor(ok), values=tensor(ov)),
                   kept_indices=[list(range(L)) for _ in range(H)])
        return run

    kept, gap, extra = select(rule, inp, hh, rc)
    run['min_boundary_score_gap'] = gap
    evicted = [sorted(set(range(L)) - set(k)) for k in kept]
    if len({len(k) for k in kept}) != 1:
        raise RuntimeError('heads keep different numbers of slots')
    K, V = inp['K'], inp['V']
    sel_k = torch.stack([K[0, h, kept[h]] for h in range(H)])[None]
    sel_v = torch.stack([V[0, h, kept[h]] for h in range(H)])[None]
    if ok.shape != sel_k.shape:
        raise RuntimeError(f'{name}: reference kept {ok.shape[2]} slots, spec {sel_k.shape[2]}')

    merge_info = None
    if merge is None or not evicted[0]:
        # E = 0 (e.g. every old image lies in the recent window): the merge is a no-op (spec §7),
        # so the run has no `merge` block, like the uncompressed runs.
        spec_k, spec_v = sel_k.numpy(), sel_v.numpy()
    else:
        smax, t = cosine_match(inp, kept, evicted)
        filt = None
        if merge in ('avg', 'weighted'):
            per_slot = smax.mean(1)  # [1, E], mean over heads, as the classes compute it
            thr = smax.mean()
            close = (per_slot - thr).abs().min().item()
            if close < FILTER_GAP:
                raise Skip(f'filter mean within {close:.2e} of the threshold')
            filt = [int(x) for x in (per_slot >= thr).squeeze(0).tolist()]
        spec_k, spec_v = spec_merge(merge, inp, kept, evicted, smax, t, filt)
        merge_info = dict(target_slot=t[0].tolist(), max_cos_sim=[[f32(x) for x in row] for row in smax[0].numpy()])
        if filt is not None:
            merge_info['filter'] = filt
        if merge == 'avg':
            m = sum(filt)
            merge_info['avg_source_evicted_slot'] = list(range(m))
            # the intended rule: scatter the filtered rows themselves (torch, like the class)
            F = torch.tensor([e for e in range(len(filt)) if filt[e]], dtype=torch.long)
            Ke = torch.stack([K[0, h, evicted[h]] for h in range(H)])[None]
            idx = t[..., F].unsqueeze(-1).repeat(1, 1, 1, inp['D'])
            intended = torch.scatter_reduce(input=sel_k, dim=2, index=idx, src=Ke[..., F, :], reduce='mean', include_self=True)
            run['_changes'] = not torch.equal(intended, ok)
        # slots nothing merged into must be the plain kept rows
        for h in range(H):
            targets = set(t[0, h].tolist()) if merge == 'pivot' else {t[0, h, e].item() for e in range(len(filt)) if filt[e]}
            for n in range(len(kept[h])):
                if n not in targets and not (torch.equal(ok[0, h, n], sel_k[0, h, n]) and torch.equal(ov[0, h, n], sel_v[0, h, n])):
                    raise RuntimeError(f'{name}: unmerged slot {n} of head {h} is not the kept row {kept[h][n]}')

    ref_k, ref_v = ok.numpy(), ov.numpy()
    if np.array_equal(ref_k, spec_k) and np.array_equal(ref_v, spec_v):
        run['reference_vs_spec'] = 'bit-exact'
    else:
        err = max(float(np.max(np.abs(a - b) / np.maximum(1, np.abs(b)))) for a, b in ((spec_k, ref_k), (spec_v, ref_v)))
        if not err <= 1e-6:
            raise RuntimeError(f'{name}: reference and spec disagree (max relative error {err:.2e})')
        run['reference_vs_spec'] = f'max relative difference {err:.1e}'

    run['outputs'] = dict(keys=tensor(ok), values=tensor(ov))
    run['kept_indices'] = kept
    if rule == 'text':
        run['n_text_nonrecent'] = extra['n_text_nonrecent']
        run['n_image_selected'] = extra['n_image_selected']
    if '_changes' in run:
        run['avg_source_misalignment_changes_keys'] = run.pop('_changes')
    if rule != 'snapkv':
        run['evicted_indices'] = evicted
    if merge_info is not None:
        run['merge'] = merge_info
    if rule == 'snapkv':
        run['snapkv_pooled_scores'] = tensor(extra['pooled'])
    return run


# ------------------------------------------------------------------------------------------
# Files


def generate(ns, applied, case, out_dir, log):
    inp = build_inputs(case)
    name = case['name']
    ver = torch.__version__
    inputs_file = f'lookm_inputs_{name}.json'
    common = dict(batch=1, num_heads=inp['H'], head_dim=inp['D'], seq_len=inp['L'], img_tokens_per_image=inp['T'],
                  image_placeholder_positions=inp['placeholders'], image_token_mask=inp['mask'])
    K, V = tensor(inp['K']), tensor(inp['V'])
    dump(os.path.join(out_dir, inputs_file), dict(
        format_version=1, case=name, torch=ver, seed=case['seed'],
        generator='torch.Generator().manual_seed(seed); Q,K,V = 3 x torch.randn(1,H,L,D) in that order',
        batch=1, num_heads=inp['H'], head_dim=inp['D'], seq_len=inp['L'], img_tokens_per_image=inp['T'],
        segments=case['segments'], image_placeholder_positions=inp['placeholders'], image_token_mask=inp['mask'],
        queries=tensor(inp['Q']), keys=K, values=V, attn_colsum=tensor(inp['colsum']),
        attention_recipe='attn = softmax(Q @ K^T / sqrt(D) + causal, dim=-1) in float32; causal = finfo(float32).min '
                         'above the diagonal, 0 elsewhere; attn_colsum = attn.sum(batch).sum(query rows) -> [H, L]'))
    written, skipped = [], []
    for method in METHODS:
        mname, kv_mode, cls_name, rule, merge = method
        runs = []
        for hh_ratio, recent_ratio in case['budgets']:
            try:
                runs.append(make_run(ns, method, inp, hh_ratio, recent_ratio))
                written.append((mname, hh_ratio, recent_ratio))
            except Skip as why:
                skipped.append((mname, hh_ratio, recent_ratio, str(why)))
                log(f'  skip {mname:26s} {name} {hh_ratio}/{recent_ratio}: {why}')
        if not runs:
            continue
        patches = [PATCH_P1, PATCH_P2] + ([PATCH_P3] if 'P3' in applied[cls_name] else [])
        inputs = dict(common, keys=K, values=V)
        if rule == 'snapkv':
            inputs['queries'] = tensor(inp['Q'])
        else:
            inputs['attn_colsum'] = tensor(inp['colsum'])
        dump(os.path.join(out_dir, f'lookm_{mname}_{name}.json'), dict(
            format_version=1, method=mname, kv_mode=kv_mode, reference_class=cls_name, reference_source=REF_SOURCE,
            patches=patches, torch=ver, dtype='float32', case=name, inputs_file=inputs_file, inputs=inputs, runs=runs))
    return inp, written, skipped


def compare_dirs(got_dir, want_dir, case, log):
    """Byte and number comparison of a regenerated case with the shipped files."""
    names = sorted(f for f in os.listdir(want_dir) if f.startswith('lookm_') and f.endswith(f'_{case}.json'))
    all_same = True
    for f in names:
        want_path, got_path = os.path.join(want_dir, f), os.path.join(got_dir, f)
        if not os.path.exists(got_path):
            log(f'  {f}: not regenerated')
            all_same = False
            continue
        want_bytes, got_bytes = open(want_path, 'rb').read(), open(got_path, 'rb').read()
        if want_bytes == got_bytes:
            log(f'  {f}: byte-identical')
            continue
        all_same = False
        diffs = []
        ignore = {'torch'}

        def walk(a, b, path):
            if isinstance(a, dict) and isinstance(b, dict):
                for k in sorted(set(a) | set(b)):
                    if k in ignore:
                        continue
                    if k not in a or k not in b:
                        diffs.append(f'{path}.{k}: only in {"shipped" if k in a else "generated"}')
                    else:
                        walk(a[k], b[k], f'{path}.{k}')
            elif isinstance(a, list) and isinstance(b, list):
                if len(a) != len(b):
                    diffs.append(f'{path}: length {len(a)} vs {len(b)}')
                    return
                if a and all(isinstance(x, float) for x in a):
                    d = max(abs(x - y) / max(1, abs(x)) for x, y in zip(a, b))
                    if d:
                        diffs.append(f'{path}: max relative difference {d:.2e}')
                    return
                for i, (x, y) in enumerate(zip(a, b)):
                    walk(x, y, f'{path}[{i}]')
            elif a != b:
                diffs.append(f'{path}: {a!r} vs {b!r}')

        walk(json.load(open(want_path)), json.load(open(got_path)), '')
        log(f'  {f}: bytes differ; ' + ('; '.join(diffs[:8]) if diffs else 'same content apart from the torch version'))
    return all_same


def write_readme(out_dir, commit, results):
    lines = [
        '# Extra LOOK-M golden vectors',
        '',
        'Generated by `tools/golden/make_cases.py` (run it with `python3 tools/golden/make_cases.py`; see its',
        'docstring) from the official reference classes of `' + REF_SOURCE + '`',
        f'at commit `{commit[:7]}`, cut out with `ast` and patched (P1/P2/P3) exactly as `shared/golden/README.md`',
        f'describes. Same format and conventions as `shared/golden/`. torch `{torch.__version__}`, CPU, float32,',
        'single thread. Every run was recomputed independently from `shared/lookm-spec.md` (`reference_vs_spec`).',
        '',
        'Check with `npx tsx tools/golden.ts test/fixtures/golden-extra`.',
        '',
        '| case | L | H | D | tokens/image | images | seed | segments | budgets (hh_ratio/recent_ratio) |',
        '|---|---|---|---|---|---|---|---|---|',
    ]
    for case, inp, written, skipped in results:
        seg = ' '.join(f'{k}{n}' for k, n in case['segments'])
        budgets = ', '.join(f'{a}/{b}' for a, b in case['budgets'])
        lines.append(f"| `{case['name']}` | {inp['L']} | {inp['H']} | {inp['D']} | {inp['T']} | {len(inp['placeholders'])} | "
                     f"{case['seed']} | `{seg}` | {budgets} |")
    total_w = sum(len(r[2]) for r in results)
    total_s = sum(len(r[3]) for r in results)
    lines += [
        '',
        'Conventions beyond `shared/golden/README.md`:',
        '',
        '* A run whose selection evicts nothing (text-prior methods of `text_tail_L40` at 0.2/0.2: the only',
        '  image lies in the recent window and all old tokens are text) has `compressed: false`,',
        '  `evicted_indices` of empty lists, `n_text_nonrecent`/`n_image_selected`, and no `merge` block',
        '  (the reference merges nothing; its output equals the input).',
        '* With a single evicted entry (E = 1) the avg/weighted filter compares a mean with itself, so the',
        '  decision rests on float equality; those runs are skipped.',
        '* SnapKV runs are also required to be tie-free inside the kept top-k, whose order is the output order.',
    ]
    lines += ['', f'{total_w} runs written, {total_s} skipped (not written):', '']
    for case, inp, written, skipped in results:
        for mname, a, b, why in skipped:
            lines.append(f"* `{mname}` `{case['name']}` {a}/{b}: {why}")
    with open(os.path.join(out_dir, 'README.md'), 'w') as fh:
        fh.write('\n'.join(lines) + '\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--mirror', default=DEFAULT_MIRROR, help='git directory of SUSTechBruce/LOOK-M')
    ap.add_argument('--rev', default='HEAD', help='reference commit (default HEAD)')
    ap.add_argument('--out', default=DEFAULT_OUT, help='output folder')
    ap.add_argument('--cases', nargs='*', help='only these case names')
    ap.add_argument('--verify-shipped', metavar='DIR', help='regenerate mixed40 and compare with DIR (e.g. shared/golden)')
    args = ap.parse_args()

    torch.set_num_threads(1)
    log = lambda s: print(s, file=sys.stderr)  # noqa: E731
    ns, commit, applied = load_reference(args.mirror, args.rev)
    log(f'reference {REF_PATH} @ {commit[:7]}; torch {torch.__version__}')

    if args.verify_shipped:
        with tempfile.TemporaryDirectory() as tmp:
            generate(ns, applied, MIXED40, tmp, log)
            same = compare_dirs(tmp, args.verify_shipped, 'mixed40', log)
            log(f'mixed40 regenerated {"byte-identically" if same else "with differences (see above)"}')

    cases = [c for c in CASES if not args.cases or c['name'] in args.cases]
    os.makedirs(args.out, exist_ok=True)
    results = []
    for case in cases:
        inp, written, skipped = generate(ns, applied, case, args.out, log)
        log(f"{case['name']}: {len(written)} runs written, {len(skipped)} skipped")
        results.append((case, inp, written, skipped))
    if not args.cases:
        write_readme(args.out, commit, results)
    total = sum(os.path.getsize(os.path.join(args.out, f)) for f in os.listdir(args.out))
    log(f'{sum(len(r[2]) for r in results)} runs written, {sum(len(r[3]) for r in results)} skipped; '
        f'{args.out}: {total / 1e6:.2f} MB')


if __name__ == '__main__':
    main()
