"""
Speech from text, offline: espeak-ng (PyPI `espeakng-loader`, no system package, no network) driven
through ctypes.

Whatever in the repo needs speech with a known transcript and no recording uses this module: the
synthetic training corpus (prepare_synthetic.py), inquiry's and bench's fallback clips, the tests.

    audio = speak("the quick brown fox")            # float32, 16 kHz, from this process's one engine
    engine = ESpeak(); pcm = engine.synth("hello", "en")      # int16 at engine.sample_rate (22050 Hz)
    pcm, words = engine.synth_words("hello there", "en")    # words: int32 [n, 3] (char, length, sample)

Kept free of torch: the corpus generator's workers only need numpy, soxr and espeak.
"""
import ctypes
import os

import numpy as np

SAMPLE_RATE = 16000  # audio.SAMPLE_RATE, what every model here takes
WORD_EVENT = 1  # espeakEVENT_WORD: a word starts (speak_lib.h); 0 ends each callback's list


class EspeakEvent(ctypes.Structure):
    """espeak_EVENT from speak_lib.h (API revision 12). `text_position` is the 1-based character index of
    the word in the text, `length` its characters, `sample` where it starts in the utterance's audio."""

    class _Id(ctypes.Union):
        _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]

    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint), ("text_position", ctypes.c_int),
                ("length", ctypes.c_int), ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _Id)]


class ESpeak:
    """espeak-ng through ctypes, synchronous mode: espeak_Synth returns once all audio is in `chunks`
    and every word event in `words`."""

    def __init__(self):
        import espeakng_loader

        self.lib = lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                     ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        self.sample_rate = lib.espeak_Initialize(2, 0, espeakng_loader.get_data_path().encode(), 0)  # 2: synchronous
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise from {espeakng_loader.get_data_path()}")
        self.chunks, self.words = [], []
        callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                         ctypes.POINTER(EspeakEvent))
        self._callback = callback_type(self._on_audio)  # keep a reference: C holds only a raw pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_audio(self, wav, n, events):
        if n > 0:
            self.chunks.append(np.ctypeslib.as_array(wav, (n,)).copy())
        i = 0
        while events and events[i].type != 0:
            if events[i].type == WORD_EVENT:
                self.words.append((events[i].text_position, events[i].length, events[i].sample))
            i += 1
        return 0  # 0: keep going

    def synth(self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
              seed: int = 0, word_gap: int = 0) -> np.ndarray:
        """int16 audio at self.sample_rate (22050 Hz), synthesised in a forked child process.

        espeak-ng keeps hidden state between calls (a pitch-flutter phase, automatic gain, an echo
        buffer: C statics no API resets), so the same call gives slightly different audio depending on
        what the process said before. A child forked from the freshly initialised engine always starts
        from the same state: the audio is a function of the arguments alone, whatever the number of
        workers. The fork is a small price for reproducible data. `word_gap` adds that many 10 ms of
        silence between words.
        """
        return self.synth_words(text, voice, rate, pitch, pitch_range, seed, word_gap)[0]

    def synth_words(self, text: str, voice: str, rate: int = 175, pitch: int = 50, pitch_range: int = 50,
                    seed: int = 0, word_gap: int = 0):
        """synth()'s audio, and espeak's word events as int32 [n, 3]: (1-based character index of the
        word in `text`, its length in characters, the sample where it starts). A word ends where the
        next starts or the speech stops; espeak reports no word ends. Numbers and some abbreviations
        give several events for one written token."""
        read_fd, write_fd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: synthesise, send the samples up the pipe, exit without Python cleanup
            code = 1
            try:
                os.close(read_fd)
                # the callback is global to the C library: another ESpeak in this process may have
                # replaced it since this one was made, and then our chunks would stay empty
                self.lib.espeak_SetSynthCallback(self._callback)
                code = 2 if self.lib.espeak_SetVoiceByName(voice.encode()) != 0 else 1
                if code == 1:
                    self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))  # breath noise; seeded from the clock otherwise
                    # after the voice: loading a voice resets them. RATE, PITCH, RANGE, WORDGAP
                    for param, value in ((1, rate), (3, pitch), (4, pitch_range), (7, word_gap)):
                        self.lib.espeak_SetParameter(param, value, 0)
                    data = text.encode()
                    if self.lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 1, None, None) == 0:  # 1: UTF-8
                        # the pipe carries the word count, the words, then the samples
                        words = np.array(self.words, np.int32).reshape(-1, 3)
                        with os.fdopen(write_fd, "wb") as f:
                            f.write(np.int32(len(words)).tobytes() + words.tobytes())
                            f.write(b"".join(chunk.tobytes() for chunk in self.chunks))
                        code = 0
            finally:
                os._exit(code)
        os.close(write_fd)
        with os.fdopen(read_fd, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) == 2:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        if status != 0:
            raise RuntimeError(f"espeak-ng could not synthesise {text!r} with voice {voice!r}")
        n_words = int(np.frombuffer(data[:4], np.int32)[0]) if len(data) >= 4 else 0
        head = 4 + 12 * n_words
        if len(data) <= head:
            raise RuntimeError(f"espeak-ng produced no audio for {text!r} with voice {voice!r}")
        return np.frombuffer(data, np.int16, offset=head), np.frombuffer(data, np.int32, 3 * n_words, 4).reshape(-1, 3)


_engine = None


def speak(text: str, voice: str = "en-us", rate: int = 175, pitch: int = 50, pitch_range: int = 50,
          seed: int = 0) -> np.ndarray:
    """`text` spoken by espeak-ng as float32 in [-1, 1] at 16 kHz, from one engine per process
    (initialising espeak-ng costs more than a short sentence)."""
    global _engine
    import soxr

    if _engine is None:
        _engine = ESpeak()
    audio = _engine.synth(text, voice, rate, pitch, pitch_range, seed=seed)
    return soxr.resample(audio.astype(np.float32) / 32768.0, _engine.sample_rate, SAMPLE_RATE)
