"""The synthetic music: one genre-styled clip per call of :func:`synth_track`.

Each track is a short arrangement rendered with vectorised numpy: drums from a genre's
bar patterns, a bass line, chords played the genre's way (strummed, stabbed, skanked,
chugged, padded, arpeggiated or comped) and a lead melody, mixed at random levels,
band-limited like an old or a modern recording and given tape hiss or vinyl crackle.
Genres differ in tempo, swing, key register, scale, harmonic content and envelopes,
distortion, drum patterns and noise; every track draws its own key, tempo, progression,
notes, sounds and levels from ``(seed, genre, index)`` alone, so the output does not
depend on the number of worker processes. Ranges overlap on purpose (rock and metal,
disco and pop, blues and jazz, country and rock) so the genres are learnable without
being trivially separable.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import signal

from genre_cls import GENRES

# Bump when the generated audio changes, so stale synthetic trees are rebuilt.
SYNTH_VERSION = "1"
_TABLE = 2048  # wavetable length (a power of two)
_BLOCK = 4  # samples per envelope value

# -------------------------------------------------------------------------------------------
# Musical vocabulary
# -------------------------------------------------------------------------------------------
SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "major_pent": (0, 2, 4, 7, 9),
    "minor_pent": (0, 3, 5, 7, 10),
    "blues": (0, 3, 5, 6, 7, 10),
}
CHORDS = {
    "maj": (0, 4, 7),
    "min": (0, 3, 7),
    "dom7": (0, 4, 7, 10),
    "min7": (0, 3, 7, 10),
    "maj7": (0, 4, 7, 11),
    "pow": (0, 7, 12),
}


def _prog(spec: str) -> tuple[tuple[int, str], ...]:
    """``"0:maj 7:dom7"`` -> ``((0, "maj"), (7, "dom7"))``: one chord per bar, root in semitones."""
    return tuple((int(a), b) for a, b in (item.split(":") for item in spec.split()))


@dataclass(frozen=True)
class Comp:
    """How the chords are played."""

    patterns: tuple[str, ...]  # 16-step bar patterns ('.' rest, 'o' soft, 'x' normal, 'X' accent);
    # "pad" = one long chord per bar, "arp" = chord tones one at a time on the pattern's hits,
    # "random" = jazz comping on random eighths
    attack: tuple[float, float]
    decay: tuple[float, float]
    tone: tuple[float, float]  # harmonic roll-off exponent: higher is darker
    octave: int = 12  # above the key's root
    drive: tuple[float, float] = (0.0, 0.0)  # tanh distortion gain (0 = clean)
    strum: float = 0.0  # seconds between successive chord tones
    mode: str = "chord"  # "chord", "pad", "arp" or "random"


@dataclass(frozen=True)
class Lead:
    """The melody."""

    octave: tuple[int, int]  # above the key's root, semitones
    steps: tuple[int, ...]  # note lengths in sixteenths
    rest: float  # probability that a note is a rest
    leap: int  # largest step of the random walk, in scale degrees
    attack: tuple[float, float]
    decay: tuple[float, float]
    tone: tuple[float, float]
    vibrato: tuple[float, float]  # depth in semitones
    odd: float = 0.0  # how much the even harmonics are suppressed (0..1): clarinet/square-ish
    drive: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class Style:
    """Everything that makes a genre, as ranges that each track samples from."""

    tempo: tuple[float, float]  # BPM
    swing: tuple[float, float]  # 0 straight .. 1 triplet shuffle
    root: tuple[int, int]  # MIDI note of the key's tonic in the bass register
    keys: tuple[tuple[str, tuple[tuple[int, str], ...]], ...]  # (scale, progression) options
    comps: tuple[Comp, ...]
    lead: Lead
    bass: tuple[str, ...]  # bass-line styles, see _bass_line
    bass_tone: tuple[float, float]
    bass_decay: tuple[float, float]
    drums: tuple[str, ...]  # names in DRUM_PATTERNS, empty for none
    kit: str  # names in _KITS
    mix: tuple[tuple[float, float], ...]  # dB ranges for drums, bass, comp, lead
    noise_db: tuple[float, float]  # hiss relative to the music
    crackle: float  # vinyl clicks per second (0 = none)
    lowpass: tuple[float, float]  # recording bandwidth, Hz
    swell: float = 0.0  # depth of slow dynamic swells (classical)


# 16-step (sixteenth-note) bar patterns per drum: kick, snare, closed hat, open hat, ride, crash.
DRUM_PATTERNS: dict[str, dict[str, str]] = {
    "shuffle": dict(kick="x.......x.......", snare="....x.......x...", hat="x.x.x.x.x.x.x.x."),
    "blues_slow": dict(kick="x.....o.x.......", snare="....x.......x..o", ride="x.x.x.x.x.x.x.x."),
    "train": dict(kick="x.......x.......", snare="o.o.x.o.o.o.x.o.", hat="x.x.x.x.x.x.x.x."),
    "country": dict(kick="x.......x.o.....", snare="....x.......x...", hat="x.o.x.o.x.o.x.o."),
    "four_floor": dict(
        kick="X...X...X...X...", snare="....x.......x...", hat="xoxoxoxoxoxoxoxo", open="..x...x...x...x."
    ),
    "disco_b": dict(
        kick="X...X...X...X...", snare="....x.......x...", open="..x...x...x...x.", crash="x..............."
    ),
    "boom_bap": dict(kick="X......x..x.....", snare="....X.......X...", hat="x.x.x.x.x.x.x.x."),
    "trap": dict(kick="X.....x...x..x..", snare="........X.......", hat="xxxxxxxxxxxxxxxx"),
    "boom_bap_b": dict(kick="X.x.......x..x..", snare="....X.......X..o", hat="x.xxx.x.x.xxx.x."),
    "jazz_ride": dict(
        ride="x...x.x.x...x.x.", hat="....x.......x...", snare="......o.......o.", kick="o..............."
    ),
    "jazz_brush": dict(ride="x...x.x.x...x.x.", snare="o.o.o.o.o.o.o.o.", kick="o.......o......."),
    "double_kick": dict(
        kick="xxxxxxxxxxxxxxxx", snare="....X.......X...", ride="x.x.x.x.x.x.x.x.", crash="X..............."
    ),
    "metal_gallop": dict(
        kick="x.xxx.xxx.xxx.xx", snare="....X.......X...", hat="x.x.x.x.x.x.x.x.", crash="X..............."
    ),
    "blast": dict(kick="x.x.x.x.x.x.x.x.", snare=".x.x.x.x.x.x.x.x", ride="xxxxxxxxxxxxxxxx", crash="X..............."),
    "pop": dict(kick="x.......x.x.....", snare="....x.......x...", hat="x.x.x.x.x.x.x.x."),
    "pop_b": dict(kick="x..x....x.......", snare="....x.......x...", hat="x.x.x.x.x.x.x.x.", open="..............x."),
    "one_drop": dict(kick="........X.......", snare="........x.......", hat="x.x.x.x.x.x.x.x."),
    "rockers": dict(kick="x...x...x...x...", snare="........x.......", hat="x.x.x.x.x.x.x.x."),
    "rock": dict(kick="x.......x.x.....", snare="....X.......X...", hat="x.x.x.x.x.x.x.x.", crash="X..............."),
    "rock_b": dict(kick="x.x.....x.x.....", snare="....X.......X...", ride="x.x.x.x.x.x.x.x."),
}

_STRUM8 = "x.x.x.x.x.x.x.x."
STYLES: dict[str, Style] = {
    "blues": Style(
        tempo=(64, 100), swing=(0.6, 1.0), root=(40, 47),
        keys=(("blues", _prog("0:dom7 0:dom7 0:dom7 0:dom7 5:dom7 5:dom7 0:dom7 0:dom7 7:dom7 5:dom7 0:dom7 7:dom7")),
              ("minor_pent", _prog("0:min7 0:min7 5:min7 5:min7 0:min7 0:min7 7:dom7 5:min7"))),
        comps=(Comp(("x...x...x...x...", "x..ox..ox..ox..o"), (0.004, 0.01), (0.4, 0.9), (1.0, 1.6), strum=0.012,
                    drive=(0.0, 2.0)),
               Comp(("pad",), (0.05, 0.15), (2.0, 4.0), (1.4, 2.0), mode="pad")),  # organ-ish
        lead=Lead((19, 29), (2, 2, 3, 4, 6, 8), 0.3, 2, (0.004, 0.02), (0.5, 1.2), (1.0, 1.5), (0.15, 0.4),
                  drive=(0.0, 2.5)),
        bass=("shuffle", "walk"), bass_tone=(1.2, 2.0), bass_decay=(0.3, 0.6),
        drums=("shuffle", "blues_slow"), kit="acoustic",
        mix=((-10, -3), (-6, -2), (-6, 0), (-4, 0)),
        noise_db=(-32, -20), crackle=3.0, lowpass=(3000, 7000)),
    "classical": Style(
        tempo=(50, 110), swing=(0.0, 0.0), root=(43, 55),
        keys=(("major", _prog("0:maj 5:maj 7:dom7 0:maj")), ("minor", _prog("0:min 5:min 7:dom7 0:min")),
              ("major", _prog("0:maj 9:min 2:min 7:dom7")), ("harmonic_minor", _prog("0:min 8:maj 5:min 7:dom7"))),
        comps=(Comp(("pad",), (0.15, 0.5), (4.0, 8.0), (1.6, 2.4), mode="pad"),  # strings
               Comp(("xxxxxxxxxxxxxxxx", "x.x.x.x.x.x.x.x."), (0.003, 0.008), (0.6, 1.5), (1.8, 2.6), mode="arp")),
        lead=Lead((24, 31), (2, 4, 4, 6, 8, 12, 16), 0.1, 1, (0.03, 0.12), (1.5, 4.0), (1.4, 2.2), (0.1, 0.3)),
        bass=("cello", "none"), bass_tone=(1.4, 2.0), bass_decay=(2.0, 5.0),
        drums=(), kit="acoustic",
        mix=((0, 0), (-8, -3), (-3, 0), (-4, 0)),
        noise_db=(-40, -26), crackle=0.0, lowpass=(5000, 10000), swell=0.5),
    "country": Style(
        tempo=(88, 136), swing=(0.0, 0.3), root=(43, 52),
        keys=(("major_pent", _prog("0:maj 0:maj 5:maj 7:maj")), ("major", _prog("0:maj 5:maj 7:maj 0:maj")),
              ("major", _prog("0:maj 0:maj 7:dom7 7:dom7 0:maj 0:maj 5:maj 7:maj"))),
        comps=(Comp((_STRUM8, "x.o.x.o.x.o.x.o.", "x...x.x.x...x.x."), (0.002, 0.006), (0.3, 0.7), (0.7, 1.1),
                    strum=0.01),),
        lead=Lead((24, 31), (1, 2, 2, 2, 4, 4, 6), 0.2, 2, (0.002, 0.006), (0.3, 0.8), (0.7, 1.1), (0.05, 0.2)),
        bass=("root5",), bass_tone=(1.2, 1.8), bass_decay=(0.3, 0.6),
        drums=("train", "country"), kit="acoustic",
        mix=((-9, -3), (-6, -2), (-4, 0), (-4, 0)),
        noise_db=(-40, -28), crackle=0.0, lowpass=(6000, 11000)),
    "disco": Style(
        tempo=(108, 132), swing=(0.0, 0.1), root=(38, 48),
        keys=(("dorian", _prog("0:min7 5:dom7")), ("minor", _prog("0:min 8:maj 10:maj 7:min")),
              ("major", _prog("0:maj7 5:maj7 2:min7 7:dom7"))),
        comps=(Comp(("..x...x...x...x.", ".x.x.x.x.x.x.x.x", "x..x..x...x..x.."), (0.002, 0.008), (0.08, 0.2),
                    (0.8, 1.3)),
               Comp(("pad",), (0.05, 0.2), (3.0, 6.0), (1.0, 1.5), octave=24, mode="pad")),  # string section
        lead=Lead((24, 31), (1, 2, 2, 4, 4, 8), 0.3, 2, (0.005, 0.02), (0.3, 1.0), (1.0, 1.6), (0.1, 0.3)),
        bass=("octave",), bass_tone=(0.9, 1.4), bass_decay=(0.12, 0.25),
        drums=("four_floor", "disco_b"), kit="disco",
        mix=((-5, -1), (-4, 0), (-6, -1), (-5, 0)),
        noise_db=(-48, -36), crackle=0.0, lowpass=(8000, 11000)),
    "hiphop": Style(
        tempo=(76, 100), swing=(0.0, 0.4), root=(33, 41),
        keys=(("minor", _prog("0:min7 8:maj7")), ("minor_pent", _prog("0:min 0:min 3:maj 5:min")),
              ("dorian", _prog("0:min7 5:min7"))),
        comps=(Comp(("pad",), (0.01, 0.05), (1.0, 2.5), (1.8, 2.8), octave=24, mode="pad"),  # dark keys
               Comp(("x.....x...x.....", "x.......x..x...."), (0.003, 0.01), (0.3, 0.8), (1.6, 2.4), octave=24)),
        lead=Lead((24, 36), (2, 4, 6, 8, 16), 0.55, 2, (0.01, 0.05), (0.3, 1.0), (1.5, 2.5), (0.0, 0.1)),
        bass=("sub",), bass_tone=(3.0, 4.0), bass_decay=(0.5, 1.2),
        drums=("boom_bap", "trap", "boom_bap_b"), kit="808",
        mix=((-2, 0), (-3, 0), (-12, -5), (-12, -4)),
        noise_db=(-40, -28), crackle=6.0, lowpass=(7000, 11000)),
    "jazz": Style(
        tempo=(96, 190), swing=(0.65, 1.0), root=(41, 50),
        keys=(("major", _prog("2:min7 7:dom7 0:maj7 0:maj7")), ("dorian", _prog("0:min7 0:min7 5:dom7 5:dom7")),
              ("mixolydian", _prog("0:dom7 5:dom7 2:min7 7:dom7"))),
        comps=(Comp(("random",), (0.003, 0.01), (0.3, 0.7), (1.4, 2.0), mode="random"),),  # piano comping
        lead=Lead((24, 31), (1, 2, 2, 2, 3, 4, 6), 0.2, 3, (0.02, 0.06), (0.6, 1.5), (0.8, 1.3), (0.1, 0.35),
                  odd=0.5),  # saxophone-ish
        bass=("walk",), bass_tone=(1.6, 2.4), bass_decay=(0.25, 0.5),
        drums=("jazz_ride", "jazz_brush"), kit="jazz",
        mix=((-12, -6), (-5, -1), (-6, -2), (-3, 0)),
        noise_db=(-34, -22), crackle=2.0, lowpass=(4000, 8000)),
    "metal": Style(
        tempo=(130, 200), swing=(0.0, 0.0), root=(28, 40),
        keys=(("phrygian", _prog("0:pow 1:pow 0:pow 3:pow")), ("minor", _prog("0:pow 8:pow 10:pow 0:pow")),
              ("harmonic_minor", _prog("0:pow 0:pow 7:pow 8:pow"))),
        comps=(Comp(("xxxxxxxxxxxxxxxx", "X.xxX.xxX.xxX.xx", "x.x.x.x.x.x.x.x."), (0.001, 0.004), (0.08, 0.3),
                    (0.8, 1.2), drive=(6.0, 20.0)),),
        lead=Lead((24, 31), (1, 1, 2, 2, 4), 0.35, 3, (0.002, 0.01), (0.5, 1.5), (0.8, 1.2), (0.1, 0.4),
                  drive=(4.0, 12.0)),
        bass=("root8",), bass_tone=(1.0, 1.5), bass_decay=(0.1, 0.25),
        drums=("double_kick", "metal_gallop", "blast"), kit="metal",
        mix=((-4, 0), (-8, -3), (-2, 0), (-8, -2)),
        noise_db=(-48, -36), crackle=0.0, lowpass=(7000, 11000)),
    "pop": Style(
        tempo=(92, 128), swing=(0.0, 0.15), root=(43, 53),
        keys=(("major", _prog("0:maj 7:maj 9:min 5:maj")), ("major", _prog("9:min 5:maj 0:maj 7:maj")),
              ("minor", _prog("0:min 8:maj 3:maj 10:maj"))),
        comps=(Comp(("pad",), (0.05, 0.3), (3.0, 6.0), (1.2, 2.0), mode="pad"),
               Comp(("x..x..x.x..x..x.", "x.x.x.x.x.x.x.x."), (0.002, 0.008), (0.3, 0.8), (1.2, 1.8))),
        lead=Lead((24, 31), (2, 2, 4, 4, 6, 8), 0.25, 2, (0.02, 0.06), (1.0, 2.0), (1.6, 2.4), (0.15, 0.4)),
        bass=("root8", "octave"), bass_tone=(1.4, 2.2), bass_decay=(0.2, 0.5),
        drums=("pop", "pop_b", "four_floor"), kit="pop",
        mix=((-5, -1), (-6, -2), (-6, -1), (-3, 0)),
        noise_db=(-50, -38), crackle=0.0, lowpass=(9000, 11000)),
    "reggae": Style(
        tempo=(64, 92), swing=(0.0, 0.3), root=(31, 40),
        keys=(("major", _prog("0:maj 5:maj")), ("minor", _prog("0:min 10:maj")), ("minor", _prog("0:min 5:min"))),
        comps=(Comp(("....x.......x...", "..x...x...x...x."), (0.001, 0.004), (0.05, 0.12), (0.7, 1.1), octave=24),),
        lead=Lead((24, 31), (2, 4, 4, 6, 8), 0.4, 2, (0.01, 0.04), (0.5, 1.5), (1.3, 2.0), (0.1, 0.3)),
        bass=("line",), bass_tone=(2.5, 3.5), bass_decay=(0.3, 0.7),
        drums=("one_drop", "rockers"), kit="reggae",
        mix=((-6, -2), (-1, 0), (-6, -2), (-8, -2)),
        noise_db=(-42, -30), crackle=1.0, lowpass=(6000, 10000)),
    "rock": Style(
        tempo=(100, 152), swing=(0.0, 0.05), root=(38, 47),
        keys=(("major", _prog("0:pow 5:pow 7:pow 5:pow")), ("mixolydian", _prog("0:maj 10:maj 5:maj 0:maj")),
              ("minor_pent", _prog("0:pow 3:pow 5:pow 0:pow"))),
        comps=(Comp((_STRUM8, "X.x.x.xxX.x.x.xx", "x..x..x.x..x..x."), (0.001, 0.005), (0.15, 0.6), (0.8, 1.3),
                    strum=0.006, drive=(2.0, 8.0)),),
        lead=Lead((19, 31), (1, 2, 2, 4, 4, 8), 0.3, 2, (0.003, 0.01), (0.5, 1.5), (0.9, 1.4), (0.1, 0.4),
                  drive=(1.0, 6.0)),
        bass=("root8",), bass_tone=(1.2, 1.8), bass_decay=(0.15, 0.35),
        drums=("rock", "rock_b"), kit="rock",
        mix=((-5, -1), (-7, -3), (-3, 0), (-6, -1)),
        noise_db=(-46, -32), crackle=0.0, lowpass=(6500, 11000)),
}

# Drum sounds per kit: kick (start Hz, end Hz, decay s, click), snare (tone Hz, noise decay s,
# noise band Hz), hat decay s, cymbal decay s.
_KITS = {
    "acoustic": dict(kick=(110, 55, 0.25, 0.3), snare=(190, 0.14, (1500, 7000)), hat=0.04, cym=1.0),
    "disco": dict(kick=(130, 50, 0.22, 0.4), snare=(220, 0.12, (1200, 8000)), hat=0.03, cym=1.2),
    "808": dict(kick=(90, 42, 0.7, 0.1), snare=(200, 0.16, (900, 6000)), hat=0.025, cym=0.8),
    "jazz": dict(kick=(90, 55, 0.2, 0.1), snare=(180, 0.25, (600, 4000)), hat=0.05, cym=1.6),
    "metal": dict(kick=(150, 60, 0.12, 0.8), snare=(240, 0.15, (1500, 9000)), hat=0.04, cym=1.4),
    "pop": dict(kick=(120, 50, 0.3, 0.3), snare=(200, 0.18, (1000, 8000)), hat=0.03, cym=1.0),
    "reggae": dict(kick=(100, 50, 0.3, 0.2), snare=(400, 0.06, (2000, 7000)), hat=0.03, cym=1.0),
    "rock": dict(kick=(130, 55, 0.2, 0.5), snare=(200, 0.16, (1500, 8000)), hat=0.04, cym=1.4),
}
_KIT_VARIANTS = 8
_HIT_GAIN = {".": 0.0, "o": 0.35, "x": 0.75, "X": 1.0}


# -------------------------------------------------------------------------------------------
# Signal building blocks (all vectorised; python loops run over notes or drums, never samples)
# -------------------------------------------------------------------------------------------
def _u(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _midi_hz(m) -> np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(m, dtype=np.float64) - 69.0) / 12.0)


def _wavetable(rolloff: float, odd: float, n_harm: int) -> np.ndarray:
    """One band-limited cycle with harmonic ``k`` at ``k**-rolloff`` (even ones scaled by ``1-odd``)."""
    k = np.arange(1, max(1, n_harm) + 1)
    amp = k ** -float(rolloff)
    amp[1::2] *= 1.0 - odd
    spec = np.zeros(_TABLE // 2 + 1, dtype=np.complex128)
    spec[k] = -1j * amp
    table = np.fft.irfft(spec, _TABLE)
    return (table / np.abs(table).max()).astype(np.float32)


def _notes(
    n: int, sr: int, starts: np.ndarray, durs: np.ndarray, midis: np.ndarray, amps: np.ndarray, *,
    rolloff: float, odd: float = 0.0, attack: float = 0.005, decay: float = 1.0, release: float = 0.03,
    vibrato: float = 0.0, vib_rate: float = 5.0, strum: float = 0.0,
) -> np.ndarray:
    """Notes (start s, length s, MIDI pitch, gain), each lasting until the next one starts.

    ``midis`` may be ``(notes, voices)``: the voices (chord tones) share onsets and the
    envelope, voice ``v`` delayed by ``v * strum`` seconds. Wavetable oscillators with one
    continuous phase per voice, an attack / exponential-decay envelope and a short release
    after each note's length; vibrato depth is in semitones.
    """
    out = np.zeros(n, dtype=np.float32)
    # Onsets on a grid of _BLOCK samples (0.18 ms), so that the envelope can run at that
    # control rate and be stretched to audio rate exactly at note boundaries.
    s = np.round(np.asarray(starts) * (sr / _BLOCK)).astype(np.int64) * _BLOCK
    amps = np.asarray(amps, dtype=np.float32)
    keep = (s < n) & (amps > 0)
    if not keep.any():
        return out
    order = np.argsort(s[keep], kind="stable")
    s = np.maximum(s[keep][order], 0)
    gate = np.asarray(durs, dtype=np.float32)[keep][order]
    hz = _midi_hz(np.asarray(midis).reshape(len(keep), -1)[keep][order])
    amps = amps[keep][order]
    first = int(s[0])
    onset = s - first

    # Envelope at control rate: attack ramp, exponential decay, exponential release after the gate.
    blocks = -(-(n - first) // _BLOCK)
    per_note = np.diff(np.append(onset // _BLOCK, blocks))
    t = np.arange(blocks, dtype=np.float32)
    t -= np.repeat((onset // _BLOCK).astype(np.float32), per_note)
    t *= np.float32(_BLOCK / sr)  # seconds since the note's onset
    released = t - np.repeat(gate, per_note)
    np.maximum(released, 0.0, out=released)
    expo = t * np.float32(-1.0 / decay) - released * np.float32(1.0 / release)
    env = np.minimum(t * np.float32(1.0 / attack), 1.0) * np.exp(expo) * np.repeat(amps, per_note)
    env = np.repeat(env, _BLOCK)[: n - first]

    lengths = np.diff(np.append(onset, n - first))  # samples per note
    table = _wavetable(rolloff, odd, min(60, int(sr / 2 / (hz.max() * (1 + vibrato / 12)))))
    if vibrato > 0:
        secs = np.arange(first, n, dtype=np.float32) / np.float32(sr)
        lfo = 1.0 + (2 ** (vibrato / 12) - 1) * np.sin(np.float32(2 * np.pi * vib_rate) * secs)
    else:  # samples since each note's onset (exact in float32 below 2**24)
        since = np.arange(n - first, dtype=np.float32)
        since -= np.repeat(onset.astype(np.float32), lengths)
    for v in range(hz.shape[1]):
        inc = hz[:, v] * (_TABLE / sr)  # table positions per sample
        if vibrato > 0:
            step = np.repeat(inc, lengths)
            step *= lfo
            phase = np.cumsum(step)
        else:  # constant pitch per note: the phase in closed form, cheaper than a float64 cumsum
            start_phase = np.concatenate([[0.0], np.cumsum(inc * lengths)[:-1]]) % _TABLE
            phase = np.repeat(start_phase.astype(np.float32), lengths)
            phase += np.repeat(inc.astype(np.float32), lengths) * since
        wave = table[phase.astype(np.int64) & (_TABLE - 1)]
        wave *= env
        delay = min(int(round(v * strum * sr)), n - first)
        out[first + delay:] += wave[: len(wave) - delay]
    return out


def _place(out: np.ndarray, template: np.ndarray, positions: np.ndarray, gains: np.ndarray) -> None:
    """Add ``template`` into ``out`` at each sample position, scaled by its gain (tails may start early)."""
    n, length = len(out), len(template)
    for pos, gain in zip(positions.tolist(), gains.tolist()):  # one slice per hit, a few hundred
        lo, hi = max(pos, 0), min(pos + length, n)
        if gain > 0 and lo < hi:
            out[lo:hi] += np.float32(gain) * template[lo - pos: hi - pos]


@lru_cache(maxsize=64)
def _sos(order: int, cutoff: float | tuple[float, float], btype: str, sr: int) -> np.ndarray:
    """A Butterworth filter (second-order sections); designs are cached, they cost more than short filtering."""
    return signal.butter(order, cutoff, btype=btype, fs=sr, output="sos")


def _band_noise(rng, length: int, sr: int, lo: float, hi: float | None) -> np.ndarray:
    """White noise high-passed at ``lo`` (band-passed up to ``hi`` when given)."""
    x = rng.standard_normal(length)
    if hi:
        return signal.sosfilt(_sos(2, (lo, min(hi, sr / 2 * 0.95)), "bandpass", sr), x)
    return signal.sosfilt(_sos(2, lo, "highpass", sr), x)


@lru_cache(maxsize=None)
def _drum_sounds(kit: str, variant: int, sr: int) -> dict[str, np.ndarray]:
    """Drum samples, varied around the kit's settings; a few variants per kit, made once per process."""
    k = _KITS[kit]
    rng = np.random.default_rng([list(_KITS).index(kit), variant, sr])

    def jit(v: float) -> float:
        return v * rng.uniform(0.85, 1.15)

    f0, f1, kdecay, click = k["kick"]
    kdecay = jit(kdecay)
    t = np.arange(int(sr * min(1.2, kdecay * 4))) / sr
    f = jit(f1) + (jit(f0) - f1) * np.exp(-t / 0.03)
    kick = np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t / kdecay)
    kick[: int(0.004 * sr)] += click * rng.standard_normal(int(0.004 * sr))

    tone, ndecay, band = k["snare"]
    ndecay = jit(ndecay)
    t = np.arange(int(sr * ndecay * 4)) / sr
    snare = 0.8 * _band_noise(rng, len(t), sr, *band) * np.exp(-t / ndecay)
    snare += 0.5 * np.sin(2 * np.pi * jit(tone) * t) * np.exp(-t / 0.04)

    hdecay = jit(k["hat"])
    t = np.arange(int(sr * hdecay * 5)) / sr
    hat = _band_noise(rng, len(t), sr, 7000, None) * np.exp(-t / hdecay)
    t_open = np.arange(int(sr * 0.4)) / sr
    open_hat = _band_noise(rng, len(t_open), sr, 6000, None) * np.exp(-t_open / 0.12)

    cdecay = jit(k["cym"])
    t = np.arange(int(sr * min(3.0, cdecay * 2.5))) / sr
    bells = np.sin(2 * np.pi * np.outer(t, rng.uniform(3000, 6500, 3))).sum(1) * 0.1
    crash = (_band_noise(rng, len(t), sr, 4000, None) + bells) * np.exp(-t / cdecay)
    t_ride = np.arange(int(sr * 0.8)) / sr
    ride = (0.4 * _band_noise(rng, len(t_ride), sr, 5000, None)
            + 0.6 * np.sin(2 * np.pi * np.outer(t_ride, rng.uniform(2500, 5200, 3))).sum(1) / 3
            ) * np.exp(-t_ride / 0.25)

    sounds = dict(kick=kick, snare=snare, hat=0.6 * hat, open=0.5 * open_hat, crash=0.6 * crash, ride=0.5 * ride)
    for name, x in sounds.items():
        x = (x / np.abs(x).max() * (1.0 if name in ("kick", "snare") else 0.7)).astype(np.float32)
        x.setflags(write=False)  # shared by every track of this process
        sounds[name] = x
    return sounds


@dataclass
class _Grid:
    """Where the sixteenth-note steps of every bar fall in time (seconds), with swing and an offset."""

    beat: float
    swing: float
    offset: float  # the clip starts this far into the first bar
    n_bars: int

    @property
    def bar(self) -> float:
        return 4 * self.beat

    def times(self, bars: np.ndarray, steps: np.ndarray) -> np.ndarray:
        sub = np.array([0.0, 0.25 + self.swing / 12, 0.5 + self.swing / 6, 0.75 + self.swing / 12])
        return bars * self.bar + (steps // 4 + sub[steps % 4]) * self.beat - self.offset

    def hits(self, pattern: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every bar's hits of a 16-step pattern: (bar, step, gain)."""
        gains = np.array([_HIT_GAIN[c] for c in pattern])
        steps = np.nonzero(gains)[0]
        bars = np.repeat(np.arange(self.n_bars), len(steps))
        steps = np.tile(steps, self.n_bars)
        return bars, steps, np.tile(gains[gains > 0], self.n_bars)


def _drums(style: Style, grid: _Grid, rng, n: int, sr: int) -> np.ndarray:
    """One of the genre's drum patterns over every bar, with varied velocities, dropped hits and timing."""
    if not style.drums:
        return np.zeros(n, dtype=np.float32)
    sounds = _drum_sounds(style.kit, int(rng.integers(_KIT_VARIANTS)), sr)
    pattern = DRUM_PATTERNS[style.drums[rng.integers(len(style.drums))]]
    out = np.zeros(n, dtype=np.float32)
    level = dict(kick=1.0, snare=0.8, hat=0.5, open=0.5, ride=0.5, crash=0.6)
    for name in sorted(pattern):
        bars, steps, gains = grid.hits(pattern[name])
        if name == "crash":  # on the first bar of each phrase only
            keep = bars % 4 == 0
            bars, steps, gains = bars[keep], steps[keep], gains[keep]
        gains = gains * rng.uniform(0.75, 1.1, len(gains)) * (rng.random(len(gains)) > 0.04)
        when = grid.times(bars, steps) + rng.normal(0.0, 0.003, len(bars))
        _place(out, sounds[name], np.round(when * sr).astype(np.int64), level[name] * gains)
    return out


def _chords_per_bar(prog, n_bars: int) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    roots = np.array([prog[b % len(prog)][0] for b in range(n_bars)])
    shapes = [CHORDS[prog[b % len(prog)][1]] for b in range(n_bars)]
    return roots, shapes


def _comp(comp: Comp, grid: _Grid, roots, shapes, key: int, rng, n: int, sr: int) -> np.ndarray:
    """The chords, as one monophonic voice per chord tone (or one voice for arpeggios)."""
    n_bars = grid.n_bars
    attack, decay, rolloff = _u(rng, comp.attack), _u(rng, comp.decay), _u(rng, comp.tone)
    base = key + comp.octave
    pattern = comp.patterns[rng.integers(len(comp.patterns))]
    if comp.mode == "pad":
        bars = np.arange(n_bars)
        starts, durs, gains = grid.times(bars, np.zeros_like(bars)), np.full(n_bars, grid.bar), np.ones(n_bars)
        hit_bars = bars
    elif comp.mode == "random":
        bars = np.repeat(np.arange(n_bars), 8)
        steps = np.tile(np.arange(0, 16, 2), n_bars)
        gains = (rng.random(len(bars)) < 0.3) * rng.uniform(0.4, 1.0, len(bars))
        starts, durs, hit_bars = grid.times(bars, steps), np.full(len(bars), grid.beat), bars
    else:
        hit_bars, steps, gains = grid.hits(pattern)
        starts = grid.times(hit_bars, steps)
        durs = np.full(len(starts), 0.9 * grid.beat / 2 if comp.mode == "chord" else grid.beat / 4)
        gains = gains * rng.uniform(0.8, 1.1, len(gains))

    kw = dict(rolloff=rolloff, attack=attack, decay=decay, release=0.3 if comp.mode == "pad" else 0.04)
    if comp.mode == "arp":  # walk up and down the chord tones (plus the octave)
        order = np.array([0, 1, 2, 3, 2, 1])
        pos = order[np.arange(len(starts)) % len(order)]
        midis = np.array([base + roots[b] + (shapes[b] + (12,))[p] for b, p in zip(hit_bars, pos)])
        return _notes(n, sr, starts, durs, midis, gains, **kw)

    # One voice per chord tone; chords with fewer tones double their root an octave up.
    voices = max(len(shape) for shape in shapes)
    voicing = np.array([(shape + (shape[0] + 12,) * voices)[:voices] for shape in shapes])
    midis = base + roots[hit_bars, None] + voicing[hit_bars]
    out = _notes(n, sr, starts, durs, midis, gains, strum=comp.strum, **kw)
    drive = _u(rng, comp.drive)
    if drive > 0:
        out = np.tanh(drive * out / (np.abs(out).max() + 1e-9))
    return out


def _bass_line(kind: str, grid: _Grid, roots, scale, key: int, rng) -> tuple[np.ndarray, ...]:
    """A bass line (start s, length s, MIDI, gain) following the chord roots."""
    n_bars, beat = grid.n_bars, grid.beat
    bars = np.arange(n_bars)
    scale = np.array(scale)
    if kind == "none":
        return np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0)
    if kind in ("root8", "octave", "shuffle", "line"):
        b = np.repeat(bars, 8)
        steps = np.tile(np.arange(0, 16, 2), n_bars)
        offs = {
            "root8": np.zeros(8, dtype=int),
            "octave": np.array([0, 12] * 4),
            "shuffle": np.array([0, 4, 7, 9, 10, 9, 7, 4]),
            "line": np.zeros(8, dtype=int),
        }[kind]
        intervals = np.tile(offs, n_bars)
        gains = np.ones(len(b))
        if kind == "line":  # reggae: melodic, with the first beat often left empty
            intervals = rng.choice(np.concatenate([scale, scale[:3] + 12]), len(b))
            intervals[::8] = 0
            gains = (rng.random(len(b)) < 0.65) * rng.uniform(0.7, 1.0, len(b))
            gains[::8] *= rng.random(n_bars) < 0.4
        lengths = np.full(len(b), beat / 2 * 0.9)
    elif kind == "walk":  # quarter notes through the scale, approaching the next root chromatically
        b = np.repeat(bars, 4)
        steps = np.tile(np.array([0, 4, 8, 12]), n_bars)
        intervals = rng.choice(np.concatenate([scale, scale + 12]), len(b)) - 12 * (rng.random(len(b)) < 0.3)
        intervals[::4] = 0
        nxt = np.append(roots[1:], roots[:1]) - roots
        intervals[3::4] = nxt + rng.choice([-1, 1], n_bars)
        gains = rng.uniform(0.8, 1.0, len(b))
        lengths = np.full(len(b), beat * 0.95)
    elif kind == "root5":  # country: root on one, fifth below on three
        b = np.repeat(bars, 2)
        steps = np.tile(np.array([0, 8]), n_bars)
        intervals = np.tile(np.array([0, -5]), n_bars)
        gains = np.ones(len(b))
        lengths = np.full(len(b), beat * 1.5)
    elif kind == "sub":  # hip-hop 808: long notes on the kick's main hits
        b = np.repeat(bars, 2)
        steps = np.tile(np.array([0, 10]), n_bars)
        intervals = np.zeros(len(b), dtype=int)
        gains = np.tile(np.array([1.0, 0.7]), n_bars)
        lengths = np.full(len(b), beat * 2)
    elif kind == "cello":  # sustained roots, a half note each
        b = np.repeat(bars, 2)
        steps = np.tile(np.array([0, 8]), n_bars)
        intervals = np.tile(np.array([0, 7]), n_bars) * (rng.random(len(b)) < 0.5)
        gains = np.ones(len(b))
        lengths = np.full(len(b), beat * 2)
    else:
        raise ValueError(f"unknown bass style {kind!r}")
    midis = key + roots[b] + intervals
    midis = np.where(midis > key + 14, midis - 12, midis)
    return grid.times(b, steps), lengths, midis, gains


def _melody(lead: Lead, grid: _Grid, scale, key: int, rng, duration: float) -> tuple[np.ndarray, ...]:
    """A random walk over the scale in the lead register, on the sixteenth grid."""
    max_notes = int(duration / (grid.beat / 4)) + 16
    lengths = rng.choice(lead.steps, max_notes)
    step_at = np.concatenate([[0], np.cumsum(lengths)[:-1]]) + int(rng.integers(0, 4))
    moves = rng.integers(-lead.leap, lead.leap + 1, max_notes)
    # reflect the walk into a band of two octaves of scale degrees
    span = 2 * len(scale)
    walk = np.cumsum(moves) + int(rng.integers(0, span))
    period = 2 * span
    r = walk % period
    degree = np.where(r > span, period - r, r)
    octave, pc = np.divmod(degree, len(scale))
    midis = key + int(rng.integers(*lead.octave)) - 12 + 12 * octave + np.array(scale)[pc]
    gains = (rng.random(max_notes) >= lead.rest) * rng.uniform(0.6, 1.0, max_notes)
    starts = grid.times(step_at // 16, step_at % 16)
    return starts, lengths * grid.beat / 4 * 0.9, midis, gains


def _lowpass(x: np.ndarray, cutoff: float, sr: int, order: int = 4) -> np.ndarray:
    sos = signal.butter(order, min(cutoff, 0.48 * sr), fs=sr, output="sos")  # cutoff differs per track
    return signal.sosfilt(sos, x).astype(np.float32)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.dot(x, x) / len(x))) + 1e-9


def synth_track(genre: str, rng: np.random.Generator, duration: float = 30.0, sr: int = 22050) -> np.ndarray:
    """One synthetic clip of ``genre`` as float32 samples in [-1, 1]."""
    style = STYLES[genre]
    n = int(round(duration * sr))
    tempo = _u(rng, style.tempo)
    beat = 60.0 / tempo
    grid = _Grid(beat=beat, swing=_u(rng, style.swing), offset=float(rng.uniform(0, 4 * beat)),
                 n_bars=int(np.ceil(duration / (4 * beat))) + 2)
    key = int(rng.integers(style.root[0], style.root[1] + 1))
    scale_name, prog = style.keys[rng.integers(len(style.keys))]
    scale = SCALES[scale_name]
    roots, shapes = _chords_per_bar(prog, grid.n_bars)

    drums = _drums(style, grid, rng, n, sr)

    b_start, b_len, b_midi, b_gain = _bass_line(style.bass[rng.integers(len(style.bass))], grid, roots, scale, key, rng)
    bass = _notes(n, sr, b_start, b_len, b_midi, b_gain, rolloff=_u(rng, style.bass_tone), attack=0.005,
                  decay=_u(rng, style.bass_decay), release=0.05)

    comp = _comp(style.comps[rng.integers(len(style.comps))], grid, roots, shapes, key, rng, n, sr)

    lead = style.lead
    m_start, m_len, m_midi, m_gain = _melody(lead, grid, scale, key, rng, duration)
    melody = _notes(n, sr, m_start, m_len, m_midi, m_gain, rolloff=_u(rng, lead.tone), odd=lead.odd,
                    attack=_u(rng, lead.attack), decay=_u(rng, lead.decay), release=0.06,
                    vibrato=_u(rng, lead.vibrato), vib_rate=float(rng.uniform(4.5, 6.5)))
    drive = _u(rng, lead.drive)
    if drive > 0:
        melody = np.tanh(drive * melody / (np.abs(melody).max() + 1e-9))

    mix = np.zeros(n, dtype=np.float32)
    for part, db in zip((drums, bass, comp, melody), style.mix):
        if part.any():
            mix += part * np.float32(10 ** (_u(rng, db) / 20) / _rms(part))
    if style.swell:
        t = np.arange(n, dtype=np.float32) / sr
        mix *= 1 + style.swell * np.sin(2 * np.pi * t / rng.uniform(6, 12) + rng.uniform(0, 2 * np.pi))
    mix = _lowpass(mix, _u(rng, style.lowpass), sr)

    level = _rms(mix)
    hiss = rng.random(n, dtype=np.float32) - np.float32(0.5)
    hiss = signal.lfilter([0.5], [1, -0.5], hiss).astype(np.float32)  # tilted towards the bass
    mix += hiss * np.float32(level * 10 ** (_u(rng, style.noise_db) / 20) / _rms(hiss))
    if style.crackle:
        clicks = rng.poisson(style.crackle * duration)
        pos = rng.integers(0, n, clicks)
        np.add.at(mix, pos, rng.uniform(-1, 1, clicks).astype(np.float32) * np.float32(level * 3))
    return (mix * np.float32(rng.uniform(0.45, 0.95) / (np.abs(mix).max() + 1e-9))).astype(np.float32)


def render_clip(style: str, seed: int, key: tuple[int, ...], seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """A clip in the style of the GTZAN genre ``style``, drawn from ``(seed, style, *key)`` alone:
    float32 ``(samples,)``, or ``(samples, 2)`` for ``channels=2`` (a slightly different right
    channel, as a stereo mix has). The synthetic trees of the other data sets are made of these."""
    if style not in GENRES:
        raise ValueError(f"unknown style {style!r}: choose one of {', '.join(GENRES)}")
    rng = np.random.default_rng([int(seed), GENRES.index(style), *key])
    y = synth_track(style, rng, seconds, sr)
    if channels == 2:
        y = np.stack([y, 0.8 * y + 0.05 * np.roll(y, 7)], axis=1)
    return y
