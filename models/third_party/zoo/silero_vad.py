"""silero_vad: Silero VAD v6 (STFT conv front end + LSTM, weights inside If subgraphs), from silero-vad.

Data: speech synthesized with espeak-ng (Debian package `espeak-ng`; `apt-get install espeak-ng`) from sentences
of scikit-learn's dataset descriptions, several voices / speeds / pitches, separated by pauses and mixed with
noise.  The stream is run through the model chunk by chunk exactly as silero_vad.utils_vad.OnnxWrapper does
(16 kHz, 512-sample chunks with 64 samples of context, state carried over), and the (input, state) pairs of
sampled chunks are stored, so every sample carries its true recurrent state and samples can be batched.
Without espeak-ng this member is skipped with a message (the committed small copy does not need it).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np

from .common import Spec

SR = 16000
CHUNK, CONTEXT = 512, 64
VOICES = ("en-us", "en-gb", "en-us+f3", "en-gb-x-rp+m3", "en-029", "en-us+f5", "en-gb-scotland", "en+klatt2")


def _espeak(textline: str, voice: str, speed: int, pitch: int) -> np.ndarray:
    from scipy.signal import resample_poly

    out = subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", "--stdin"],
                         input=textline.encode(), check=True, capture_output=True).stdout
    sr = int.from_bytes(out[24:28], "little")  # espeak-ng streams a WAV whose size fields are not filled in
    x = np.frombuffer(out[44:44 + (len(out) - 44) // 2 * 2], np.int16).astype(np.float32) / 32768.0
    return resample_poly(x, SR, sr).astype(np.float32) if sr != SR else x


def stream(sentences: list[str], rng) -> tuple[np.ndarray, np.ndarray]:
    """(noisy 16 kHz signal, clean speech signal) of utterances separated by 0.2-1.6 s pauses."""
    clean = [np.zeros(int(SR * rng.uniform(0.3, 1.0)), np.float32)]
    for s in sentences:
        v = VOICES[int(rng.integers(len(VOICES)))]
        sp = _espeak(s, v, int(rng.integers(130, 200)), int(rng.integers(25, 75)))
        clean += [sp * np.float32(rng.uniform(0.3, 1.0)), np.zeros(int(SR * rng.uniform(0.2, 1.6)), np.float32)]
    clean = np.concatenate(clean)
    noise = rng.normal(0, 1, clean.size).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish noise
        noise = np.cumsum(noise) * 0.02
        noise -= np.convolve(noise, np.ones(801) / 801, mode="same")
    snr_db = rng.uniform(5, 30)
    p_sig = np.mean(clean[np.abs(clean) > 1e-4] ** 2) if np.any(np.abs(clean) > 1e-4) else 1e-4
    noise *= np.sqrt(p_sig / 10 ** (snr_db / 10) / max(np.mean(noise ** 2), 1e-12))
    return np.clip(clean + noise, -1, 1).astype(np.float32), clean


def chunk_labels(clean: np.ndarray) -> np.ndarray:
    """1 where the clean speech's RMS in the 512-sample chunk is within 35 dB of the loudest chunk."""
    n = clean.size // CHUNK
    rms = np.sqrt(np.mean(clean[:n * CHUNK].reshape(n, CHUNK) ** 2, axis=1))
    return (rms > rms.max() * 10 ** (-35 / 20)).astype(np.int64)


def run_stream(sess, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """OnnxWrapper's loop: per chunk, input = [context(64) | chunk(512)], state carried; returns the model
    inputs (input [n, 576], state [2, n, 128]) and outputs of every chunk."""
    n = x.size // CHUNK
    state = np.zeros((2, 1, 128), np.float32)
    context = np.zeros((1, CONTEXT), np.float32)
    inputs, states, probs = np.empty((n, CHUNK + CONTEXT), np.float32), np.empty((2, n, 128), np.float32), []
    sr = np.array(SR, dtype=np.int64)
    for i in range(n):
        inp = np.concatenate([context, x[None, i * CHUNK:(i + 1) * CHUNK]], axis=1)
        inputs[i], states[:, i] = inp[0], state[:, 0]
        out, state = sess.run(None, {"input": inp, "state": state, "sr": sr})
        probs.append(float(out[0, 0]))
        context = inp[:, -CONTEXT:]
    return inputs, states, np.asarray(probs)


def _sample(n_total: int, n: int, labels: np.ndarray, rng) -> np.ndarray:
    """n chunk indices, half speech and half non-speech where possible, in stream order."""
    sp, ns = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    k = min(n // 2, sp.size)
    idx = np.concatenate([rng.choice(sp, k, replace=False), rng.choice(ns, min(n - k, ns.size), replace=False)])
    return np.sort(idx)


def split(sentences, n, rng, sess):
    x, clean = stream(sentences, rng)
    labels = chunk_labels(clean)
    inputs, states, _ = run_stream(sess, x)
    idx = _sample(len(labels), n, labels, rng)
    return {"input": inputs[idx], "state": np.ascontiguousarray(states[:, idx]),
            "sr": np.array(SR, dtype=np.int64)}, labels[idx]


def make_data(ctx):
    import onnxruntime as ort
    import sklearn

    from . import text

    if shutil.which("espeak-ng") is None:
        raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng); silero_vad's speech "
                           "data is synthesized with it. Skipping this member.")
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(ctx.model_path), so, providers=["CPUExecutionProvider"])
    rng = ctx.rng(40)
    lines = [c for c in text.load_text_chunks(rng, max_words=12) if len(c.split()) >= 4]
    order = rng.permutation(len(lines))
    ev_lines, cal_lines = [lines[i] for i in order[:40]], [lines[i] for i in order[40:60]]
    calib, _ = split(cal_lines, ctx.spec.n_calib, ctx.rng(41), sess)
    evals, y = split(ev_lines, ctx.spec.n_eval, ctx.rng(42), sess)
    ver = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True).stdout.strip()
    info = {"source": f"espeak-ng speech ({ver}) of sentences from sklearn/datasets/descr/*.rst (scikit-learn "
                      f"{sklearn.__version__}); eval: 40 sentences, calib: 20 other sentences; voices {VOICES}, "
                      "speed 130-200 wpm, pitch 25-75, pauses 0.2-1.6 s, white or brown noise at 5-30 dB SNR",
            "sampling": "chunks sampled half speech / half non-speech, stored in stream order with their true state",
            "layout": "input [N, 576] (64 context + 512 new samples), state [2, N, 128] (batch on axis 1), sr a "
                      "0-d int64 (16000) shared by every sample",
            "extra_axes": {"labels": 0}}
    return calib, {**evals, "labels": y}, info


def metric(outputs, extras):
    p = outputs["output"][:, 0]
    y = extras["labels"].astype(bool)
    pred = p > 0.5
    tp = float(np.sum(pred & y))
    return {"frame_accuracy": float(np.mean(pred == y)), "speech_recall": tp / max(y.sum(), 1),
            "speech_precision": tp / max(pred.sum(), 1), "mean_prob_speech": float(p[y].mean()),
            "mean_prob_nonspeech": float(p[~y].mean())}


SPEC = Spec(
    name="silero_vad",
    family="RNN: STFT-as-Conv front end + conv encoder + LSTM decoder, inside If subgraphs (16k / 8k branches)",
    task="voice activity detection (speech probability per 32 ms chunk), stateful",
    package="silero-vad", version="6.2.3",
    wheel_file="silero_vad/data/silero_vad.onnx",
    sha256="1a153a22f4509e292a94e67d6f9b85e8deb25b4988682b7e174c65279d8788e3",
    license="MIT (wheel LICENSE file, Silero Team)",
    homepage="https://github.com/snakers4/silero-vad",
    description="Silero VAD v6 ONNX (the package's default model) built with spox: the top graph has 5 nodes and "
                "no initializers; every weight is a Constant node inside If branches selected by `sr`.",
    make_data=make_data, metric=metric,
    inputs={"input": {"batch_axis": 0}, "state": {"batch_axis": 1}, "sr": {"batch_axis": None, "value": SR}},
    outputs={"output": {"kind": "decision", "threshold": 0.5, "note": "speech probability [N, 1] (sigmoid)"},
             "stateN": {"kind": "state", "batch_axis": 1, "note": "LSTM (h, c) [2, N, 128], fed back as `state`"}},
    n_calib=200, n_eval=500, small=(64, 200),
    quirks=[
        "top graph: 5 nodes, 0 initializers; 25 If nodes in total, 50 subgraphs, 341 Constant nodes, LSTM x4 "
        "(2 per sample-rate branch) inside If branches",
        "scalar (0-d) int64 input `sr` selects the branch; stored in the npz as a 0-d array",
        "state input [2, batch, 128]: the batch is axis 1, not 0",
        "outputs declared with unnamed dims (stateN [None, None, None])",
        "producer spox, opset 16",
    ],
    preprocessing={"reference": "silero_vad/utils_vad.py::OnnxWrapper.__call__ (6.2.3)",
                   "steps": "16 kHz float32 in [-1, 1]; 512-sample chunks; each input = last 64 samples of the "
                            "previous input + the new chunk (576); state starts at zeros and is the previous stateN"},
    labels={"labels": "1 = speech (clean TTS signal's chunk RMS within 35 dB of the loudest chunk), 0 = pause",
            "metric": "frame accuracy of output > 0.5"},
)
