"""The emulator's stand-in for the biometric engine: mu-law decoding, voice activity, voiceprints.

None of this is das-Peak's real biometrics. It is a small, documented imitation with the same
shape: voice is counted with webrtcvad on 8 kHz 20 ms frames; a voiceprint is the mean and spread
of MFCC features over the voiced frames; a verify score is how close two voiceprints are; and
authenticity measures how much the spectrum moves over time (speech moves a lot, a tone does not).
"""

from __future__ import annotations

import base64
import binascii
import json
import math

import numpy as np
import webrtcvad

SAMPLE_RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz: one mu-law byte per sample
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
VAD_AGGRESSIVENESS = 2
CREDENTIAL_VERSION = 1


def _ulaw_to_linear(code: int) -> int:
    # Sun Microsystems' g711.c ulaw2linear (the table audioop uses), byte by byte.
    code = ~code & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return (0x84 - magnitude) if code & 0x80 else (magnitude - 0x84)


#: The 256-entry G.711 mu-law decode table (the emulator keeps its own: it must catch client mistakes).
MULAW_TO_LINEAR = np.array([_ulaw_to_linear(code) for code in range(256)], dtype=np.int16)


def mulaw_to_pcm(data: bytes) -> np.ndarray:
    """Decode G.711 mu-law bytes to int16 samples."""
    return MULAW_TO_LINEAR[np.frombuffer(data, dtype=np.uint8)]


class VoiceCollector:
    """Counts voice in a mu-law stream with webrtcvad and keeps the audio and its voiced frames."""

    def __init__(self, aggressiveness: int = VAD_AGGRESSIVENESS) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._pending = b""
        self.audio = bytearray()  # every mu-law byte received, in order
        self.voiced: list[np.ndarray] = []  # int16 frames the VAD called speech
        self.frames_seen = 0

    @property
    def voice_seconds(self) -> float:
        return len(self.voiced) * FRAME_SECONDS

    @property
    def audio_seconds(self) -> float:
        return len(self.audio) / SAMPLE_RATE

    def feed(self, mulaw: bytes) -> float:
        """Add mu-law audio (any length) and return the voice seconds collected so far."""
        self.audio.extend(mulaw)
        data = self._pending + mulaw
        usable = len(data) - len(data) % FRAME_SAMPLES
        self._pending = data[usable:]
        if usable:
            pcm = mulaw_to_pcm(data[:usable])
            raw = pcm.tobytes()
            for index in range(usable // FRAME_SAMPLES):
                frame = raw[index * FRAME_SAMPLES * 2 : (index + 1) * FRAME_SAMPLES * 2]
                if self._vad.is_speech(frame, SAMPLE_RATE):
                    self.voiced.append(pcm[index * FRAME_SAMPLES : (index + 1) * FRAME_SAMPLES])
            self.frames_seen += usable // FRAME_SAMPLES
        return self.voice_seconds

    def voiced_signal(self) -> np.ndarray:
        """The voiced frames joined, as float64 in -1..1."""
        if not self.voiced:
            return np.zeros(0)
        return np.concatenate(self.voiced).astype(np.float64) / 32768.0


# --- features ------------------------------------------------------------------------------------

_FFT_SIZE = 256
_HOP = 80  # 10 ms
_MEL_BANDS = 24
_MFCC = 13  # c0..c12; c0 (loudness) is left out of the voiceprint


def _mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_filterbank() -> np.ndarray:
    edges_mel = np.linspace(_mel(100.0), _mel(3800.0), _MEL_BANDS + 2)
    edges_hz = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(_FFT_SIZE, 1.0 / SAMPLE_RATE)
    bank = np.zeros((_MEL_BANDS, bins.size))
    for band in range(_MEL_BANDS):
        low, centre, high = edges_hz[band : band + 3]
        rising = (bins - low) / (centre - low)
        falling = (high - bins) / (high - centre)
        bank[band] = np.clip(np.minimum(rising, falling), 0.0, None)
    return bank


_FILTERBANK = _mel_filterbank()
_DCT = np.cos(np.pi / _MEL_BANDS * (np.arange(_MEL_BANDS)[None, :] + 0.5) * np.arange(_MFCC)[:, None])


def log_mel(signal: np.ndarray) -> np.ndarray:
    """Log mel energies, one row per 10 ms hop (32 ms Hann windows)."""
    if signal.size < _FFT_SIZE:
        signal = np.pad(signal, (0, _FFT_SIZE - signal.size))
    count = 1 + (signal.size - _FFT_SIZE) // _HOP
    index = np.arange(_FFT_SIZE)[None, :] + _HOP * np.arange(count)[:, None]
    frames = signal[index] * np.hanning(_FFT_SIZE)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    return np.log(power @ _FILTERBANK.T + 1e-10)


def voiceprint(signal: np.ndarray) -> list[float]:
    """Mean and standard deviation of MFCC c1..c12 over the voiced signal."""
    mfcc = log_mel(signal) @ _DCT.T
    coefficients = mfcc[:, 1:]
    print_ = np.concatenate([coefficients.mean(axis=0), coefficients.std(axis=0)])
    return [round(float(value), 4) for value in print_]


#: Typical spread of each MFCC c1..c12 over voiced speech frames (measured on the espeak-ng fixtures,
#: rounded): each voiceprint dimension is divided by it, so that c1 (large, mostly loudness contour and
#: vowel quality) no longer drowns c5..c12, where the differences between voices are.
COEFFICIENT_SPREAD = (17.9, 17.8, 16.8, 13.5, 12.3, 9.1, 10.0, 7.1, 7.9, 4.6, 5.2, 5.2)
#: Distance scale of the similarity, calibrated on the fixtures (docs/emulator.md, "measured margins"):
#: 3 s of the enrolled voice scores about 0.7-0.75, another fixture voice 0.52 or less.
SCORE_SCALE = 1.3


def similarity(first: list[float], second: list[float]) -> float:
    """Score in 0..1: exp(-distance / SCORE_SCALE) between voiceprints whose dimensions are divided by
    their typical spread (COEFFICIENT_SPREAD, for the means and the deviations alike)."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError("voiceprints of different sizes")
    spread = np.tile(np.asarray(COEFFICIENT_SPREAD), a.size // len(COEFFICIENT_SPREAD))
    return float(math.exp(-float(np.linalg.norm((a - b) / spread)) / SCORE_SCALE))


#: Spectral movement (RMS change of the log mel shape per 10 ms, median) that maps to 1 - 1/e.
#: Calibrated: espeak-ng speech moves about 0.7 (authenticity > 0.98), a 440 Hz tone 0.09 (< 0.1).
AUTHENTICITY_SCALE = 0.35


def authenticity(signal: np.ndarray) -> float:
    """Spectral flux in 0..1: 1 - exp(-(median frame-to-frame change of the log mel shape / scale)^2).

    Speech changes its spectrum every few tens of milliseconds and scores near 1; a pure tone or a
    constant signal keeps one spectrum and scores near 0.
    """
    if signal.size < 2 * _FFT_SIZE or not np.any(signal):
        return 0.0
    spectra = log_mel(signal)
    spectra = spectra - spectra.mean(axis=1, keepdims=True)  # shape only, not loudness
    flux = np.sqrt(np.mean(np.diff(spectra, axis=0) ** 2, axis=1))
    return float(1.0 - math.exp(-((float(np.median(flux)) / AUTHENTICITY_SCALE) ** 2)))


# --- credentials -------------------------------------------------------------------------------------


def make_credential(model_hash: str, print_: list[float]) -> str:
    """An opaque base64 credential carrying the model hash and the voiceprint."""
    body = {"v": CREDENTIAL_VERSION, "model_hash": model_hash, "voiceprint": print_}
    return base64.b64encode(json.dumps(body, separators=(",", ":")).encode()).decode("ascii")


def read_credential(credential: str) -> tuple[str, list[float]]:
    """(model hash, voiceprint) from a credential; ValueError when it is not one of ours."""
    try:
        body = json.loads(base64.b64decode(credential.encode("ascii"), validate=True))
    except (binascii.Error, UnicodeError, ValueError) as error:
        raise ValueError("not a credential issued by this emulator") from error
    if not isinstance(body, dict) or body.get("v") != CREDENTIAL_VERSION:
        raise ValueError("not a credential issued by this emulator")
    model_hash = body.get("model_hash")
    print_ = body.get("voiceprint")
    if (
        not isinstance(model_hash, str)
        or not isinstance(print_, list)
        or len(print_) != 2 * (_MFCC - 1)
        or not all(isinstance(value, (int, float)) and math.isfinite(value) for value in print_)
    ):
        raise ValueError("credential is damaged")
    return model_hash, [float(value) for value in print_]
