"""
Transcribe audio files of any length with a Whisper checkpoint.

    python transcribe.py ../shared/data/jfk.flac
    python transcribe.py talk.mp3 --output-format srt --output-dir subs --word-timestamps
    python transcribe.py a.flac b.mp3 --model base.en --batch-size 16 --device cuda

Long-form decoding follows openai-whisper's: windows of the model's length (30 s for official
models, 2 * n_audio_ctx frames for ours) that move by what was transcribed (seek),
timestamp tokens that cut segments, the previous text as a prompt, and a fallback to higher
temperatures when a window's text is too repetitive or too unlikely. The defaults equal the
reference command line's. With --batch-size N the audio is instead cut at silences into windows
that are decoded N at a time with no conditioning between them: the fast path on a GPU.
A model whose checkpoint says it was trained without timestamps is always cut at silences, one
segment per window; a prompt, translation or another language than English is refused for it.

With one file and the default text output, stdout is the transcript and nothing else; progress,
the detected language and errors go to stderr. A file that can't be read is reported in one line
and skipped; the others are still transcribed, and the exit code is 1. A bad option is one line
and exit code 2 before any work; so are two inputs whose outputs would share a name (a/x.flac and
b/x.ogg with --output-format txt): they are refused rather than renamed apart.
"""
import argparse
import bisect
import json
import math
import os
import sys
import time

import numpy as np
import torch

from audio import (FRAMES_PER_SECOND, HOP_LENGTH, LEVELS, N_FRAMES, SAMPLE_RATE, AudioError, AudioFile, LongFormMel,
                   audio_source, pad_or_trim, window_frames, window_mel)
from cli import OneLineErrors, unwritable
from decoding import decode, detect_language, encode
from files import atomic_write, remove_stale_temps
from tokenizer import LANGUAGES, TO_LANGUAGE_CODE, get_tokenizer
from vad import holds_speech, speech_only, speech_probs, speech_spans, to_original

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "int8": torch.float32}  # int8: CPU only
TIME_PER_TOKEN = 0.02  # seconds per timestamp step (2 mel frames per audio token)
# Whisper writes "you" or "." over digital silence with confidence (openai-whisper does too), so a
# window whose loudest sample is below -80 dBFS is not decoded at all
SILENCE_PEAK = 10 ** (-80 / 20)
# how long-form sets each window's level (audio.LEVELS); "file" is openai-whisper's. "agc" helps
# files whose speakers change level, but not every bench file once the temperature fallback runs
# (docs/bench.md, part l), so it is an option
DEFAULT_LEVEL = "file"
# quiet speech (transcribe's quiet_speech): silero-vad's sentences in a quiet stretch, a little padded,
# at least 1 s (shorter is a breath or a pause in a louder speaker's sentence); the lifted window's
# text is kept if it says QUIET_RATE more words a second of that speech (speech runs 2-3): sampling
# alone moves a window's word count by a few. It is heard again only where the segments over that
# speech say fewer than QUIET_PASS words a second: a recording's own quieter passages aren't decoded twice
QUIET_SILENCE, QUIET_PAD, QUIET_SPEECH, QUIET_RATE, QUIET_PASS = 0.3, 0.1, 100, 1.0, 2.0


@torch.inference_mode()
def decode_with_fallback(model, mels, temperatures=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), compression_ratio_threshold=2.4,
                         logprob_threshold=-1.0, no_speech_threshold=0.6, beam_size=5, best_of=5, audio_features=None,
                         **options):
    """Decode a batch of windows at the first temperature; windows whose text is too repetitive
    (gzip ratio) or too unlikely (avg log-prob) are decoded again at the next one, unless the model
    says they are silence. Beam search at temperature 0, best-of-n sampling above. audio_features:
    the windows' encoder output, where the caller has it already."""
    results = [None] * len(mels)
    todo = list(range(len(mels)))
    if audio_features is None:
        audio_features = encode(model, mels)  # once, whatever the retries
    for t in temperatures:
        if t > 0:  # sampling: best_of candidates, no beams
            search = dict(temperature=t, best_of=best_of if best_of and best_of > 1 else None)
        else:
            search = dict(beam_size=beam_size if beam_size and beam_size > 1 else None)
        if not search.get("beam_size"):
            options.pop("patience", None)
        batch = decode(model, audio_features[todo], **search, **options)
        retry = []
        for i, result in zip(todo, batch):
            results[i] = result
            failed = (compression_ratio_threshold is not None and result.compression_ratio > compression_ratio_threshold) \
                or (logprob_threshold is not None and result.avg_logprob < logprob_threshold)
            silent = no_speech_threshold is not None and logprob_threshold is not None \
                and result.no_speech_prob > no_speech_threshold and result.avg_logprob < logprob_threshold
            if failed and not silent:
                retry.append(i)
        todo = retry
        if not todo:
            break
    return results


def split_segments(tokens: list, tokenizer, time_offset: float, window_frames: int):
    """Cut a window's tokens into segments at each pair of consecutive timestamps.

    Returns (segments, consumed_frames, single_ending); consumed_frames is where the next window may start. A window that ends with
    a lone timestamp is done; otherwise the text after the last complete segment is dropped and the
    next window starts at that segment's end, so nothing is cut mid-sentence.
    """
    ts_begin = tokenizer.timestamp_begin
    is_ts = [t >= ts_begin for t in tokens]
    single_ending = is_ts[-2:] == [False, True]
    cuts = [i + 1 for i in range(len(tokens) - 1) if is_ts[i] and is_ts[i + 1]]
    segments = []
    if cuts:
        if single_ending:
            cuts.append(len(tokens))
        last = 0
        for cut in cuts:
            piece = tokens[last:cut]
            start, end = (piece[0] - ts_begin) * TIME_PER_TOKEN, (piece[-1] - ts_begin) * TIME_PER_TOKEN
            segments.append((time_offset + start, time_offset + end, piece))
            last = cut
        consumed = window_frames if single_ending else (tokens[last - 1] - ts_begin) * 2
    else:
        duration = window_frames / FRAMES_PER_SECOND
        stamps = [t for t in tokens if t >= ts_begin]
        if stamps and stamps[-1] != ts_begin:  # no pair, but one timestamp: the speech ends there
            duration = (stamps[-1] - ts_begin) * TIME_PER_TOKEN
        segments.append((time_offset, time_offset + duration, tokens))
        consumed = window_frames
    return segments, consumed, single_ending


def transcribe(model, audio, *, beam_size=5, best_of=5, patience=None, length_penalty=None,
               temperature=(0.0, 0.2, 0.4, 0.6, 0.8, 1.0), compression_ratio_threshold=2.4, logprob_threshold=-1.0,
               no_speech_threshold=0.6, condition_on_previous_text=True, initial_prompt=None, word_timestamps=False,
               language=None, task="transcribe", batch_size=None, suppress_tokens="-1", progress=False,
               clip_timestamps="0", carry_initial_prompt=False, hallucination_silence_threshold=None, prefix=None,
               hotwords=None, without_timestamps=False, reference=False, level=None, vad=False) -> dict:
    """16 kHz samples -> {"text", "segments", "language", "language_probability"}.

    Each segment has id, seek, start, end, text, tokens, temperature, avg_logprob,
    compression_ratio, no_speech_prob, and with word_timestamps a list of words.

    As in openai-whisper: clip_timestamps ("start,end,start,..." in seconds, or a list) limits the
    work to those clips, the last running to the end when the count is odd; carry_initial_prompt
    puts the initial prompt before every window's prompt, not only the first's; and
    hallucination_silence_threshold (seconds; needs word_timestamps) skips a silence longer than
    that around a segment whose words look hallucinated, and drops the segment.

    As in faster-whisper: prefix is the start of the first window's text (the first decoded; after
    <|0.00|> when there are timestamps), which the model continues and the transcript includes;
    hotwords go before the previous text in every window's prompt, except the one given the prefix;
    without_timestamps decodes text only, one segment per window covering the window.

    reference=True keeps openai-whisper's algorithm exactly: every window's log-mel is clamped 80 dB
    below the whole file's loudest frame, and windows of digital silence are decoded too. `level`
    (audio.LEVELS) chooses otherwise: "window" clamps each window below its own loudest frame, as
    Whisper's 30 s training segments were; "gain" first lifts the window until its loudest frame is
    the file's; "agc" lifts each quiet stretch of speech inside a window toward the file's level.
    The default is DEFAULT_LEVEL (why: its comment and bench.py --part l). Sequential decoding in
    the default mode also checks each window's text against its audio (issue 21): a window that ends
    on a lone timestamp while sound follows a pause there is continued from that timestamp instead
    of skipped whole (or, where noise fills that pause, from the sentence silero-vad hears after
    it), a segment with no sound under it is dropped, sound between two segments that silero-vad
    calls speech (a quiet speaker the text left out) is decoded again on its own, and so is each
    sentence under a segment stretched across a pause between two; and a window holding a quieter
    speaker (speech by silero-vad in a stretch 15 dB or more under the file's loudest frame) is
    decoded again with that speech lifted near the loud one's level, and that text kept where it
    says more (a sentence said twice over counted once); where a segment still runs thin over that
    speech, the next window starts there. reference=True does none of this. (A window that fails at
    every temperature keeps its hottest decoding, as in openai-whisper: keeping the likeliest, as
    faster-whisper does, looped through a 40 s stretch of noise, docs/bench.md part l.)

    vad=True (as faster-whisper's vad_filter) hears only the speech that silero-vad finds (vad.py),
    joined; batched windows are cut where one stretch of speech meets the next, and every time in
    the result is the original audio's.
    """
    from tqdm import tqdm

    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be at least 1 (None decodes sequentially), got {batch_size}")
    clips = parse_clip_timestamps(clip_timestamps)
    check_long_form_options(batch_size=batch_size, word_timestamps=word_timestamps, clip_timestamps=clips,
                            hallucination_silence_threshold=hallucination_silence_threshold,
                            timestamps=getattr(model, "timestamps", True), prefix=prefix, hotwords=hotwords,
                            vad=vad)
    if reference and level not in (None, "file"):
        raise ValueError(f"reference=True is openai-whisper's level 'file'; it can't go with level={level!r}")
    level = level or ("file" if reference else DEFAULT_LEVEL)
    if level not in LEVELS:
        raise ValueError(f"level: expected one of {', '.join(LEVELS)}, got {level!r}")
    temperatures = (temperature,) if isinstance(temperature, (int, float)) else tuple(temperature)
    decode_options = dict(temperatures=temperatures, compression_ratio_threshold=compression_ratio_threshold,
                          logprob_threshold=logprob_threshold, no_speech_threshold=no_speech_threshold,
                          beam_size=beam_size, best_of=best_of, patience=patience, length_penalty=length_penalty,
                          suppress_tokens=suppress_tokens)
    if not getattr(model, "timestamps", True):
        check_options(model, initial_prompt=initial_prompt, language=language, task=task, prefix=prefix,
                      hotwords=hotwords)  # before any work, the file's checks included
    audio = audio_source(audio)  # a path is read from its file a span at a time, never whole
    speech = None
    if vad:
        audio = speech = speech_only(audio)
    if not getattr(model, "timestamps", True):
        result = transcribe_short_windows(model, audio, batch_size=batch_size, word_timestamps=word_timestamps,
                                          progress=progress, **decode_options)
        return to_original(result, speech) if speech else result
    # the model's window: 3000 frames (30 s) for official models, 2 * n_audio_ctx for ours
    n_window = window_frames(model.dims.n_audio_ctx)
    mel = LongFormMel(audio, n_mels=model.dims.n_mels, device=model.device)
    language, language_probability = resolve_language(model, mel, language, task, level)
    tokenizer = get_tokenizer(model.is_multilingual, model.num_languages, language, task)
    decode_options.update(tokenizer=tokenizer, timestamps=not without_timestamps, prefix_in_text=True)

    def window(seek: int, size: int) -> torch.Tensor:
        # like the reference: the content frames, then zero frames (not the mel of silence) to the window's end
        return pad_or_trim(mel.frames(seek, seek + size, level), n_window).to(model.dtype)

    heard_stretches = {}  # windows overlap: a stretch inside two of them is asked about once

    def quiet_speech(seek: int, size: int, result=None) -> list:
        """[(a, b)] frames of the window that silero-vad calls speech inside its quiet stretches
        (LongFormMel.quiet_stretches), each at least QUIET_SPEECH long: a quieter speaker. Given
        the window's decoding, a stretch its segments say densely (said_densely) isn't asked
        about: no speech there could be passed over, nor a segment run thin over it."""
        dense = None
        if result is not None and not is_no_speech(result, no_speech_threshold, logprob_threshold):
            pieces, consumed, _ = split_segments(result.tokens, tokenizer, seek / FRAMES_PER_SECOND, size)
            dense = (pieces, seek + consumed)
        spans = []
        for a, b in mel.quiet_stretches(seek, seek + size):
            if (a, b) not in heard_stretches:
                if dense and said_densely(dense[0], a / FRAMES_PER_SECOND, min(b, dense[1]) / FRAMES_PER_SECOND,
                                          tokenizer):
                    continue
                heard_stretches[a, b] = speech_in(a, b, QUIET_SILENCE)
            spans += heard_stretches[a, b]
        return spans

    def speech_in(start: int, stop: int, min_silence: float) -> list:
        """[(a, b)] frames of the speech silero-vad hears in frames start..stop (min_silence
        seconds of silence end it; QUIET_PAD of padding), each QUIET_SPEECH or longer."""
        probs = speech_probs(audio_source(audio.read(start * HOP_LENGTH, stop * HOP_LENGTH)))
        spans = speech_spans(probs, (stop - start) * HOP_LENGTH, min_silence=min_silence, pad=QUIET_PAD)
        spans = [(start + a // HOP_LENGTH, start + -(-b // HOP_LENGTH)) for a, b in spans]
        return [(a, b) for a, b in spans if b - a >= QUIET_SPEECH]

    def unheard_speech_start(seek: int, size: int, tokens: list):
        """Frames into the window where the next one should start when its text ends on a lone
        timestamp and silero-vad hears a sentence (QUIET_SPEECH or longer) starting a pause of
        UNHEARD_PAUSE steps or more after it: that sentence's start. None where there is none."""
        last = last_timestamp(tokens, tokenizer)
        if not 0 < last < size:
            return None
        return next((a - seek for a, _ in speech_in(seek + last, seek + size, QUIET_SILENCE)
                     if a - (seek + last) >= UNHEARD_PAUSE * SOUND_STEP), None)

    def heard_alone(start: int, stop: int) -> list:
        """The segments (start s, end s, tokens, decoding) of frames start..stop decoded on their
        own, clamped below their own loudest frame as a clip alone is; none where that is no speech."""
        alone = pad_or_trim(mel.frames(start, stop, "window"), n_window).to(model.dtype)
        heard = decode_with_fallback(model, alone[None], **decode_options)[0]
        if is_no_speech(heard, no_speech_threshold, logprob_threshold):
            return []
        end = stop / FRAMES_PER_SECOND
        return [(min(s, end), min(e, end), t, heard) for s, e, t in
                split_segments(heard.tokens, tokenizer, start / FRAMES_PER_SECOND, stop - start)[0]
                if word_count(t, tokenizer)]

    def make_segment(seek, start, end, tokens, result):
        return dict(seek=seek, start=round(start, 3), end=round(end, 3), text=tokenizer.decode(tokens),
                    tokens=tokens, temperature=result.temperature, avg_logprob=result.avg_logprob,
                    compression_ratio=result.compression_ratio, no_speech_prob=result.no_speech_prob)

    n_content = mel.n_content
    prompt_tokens = tokenizer.encode(" " + initial_prompt.strip()) if initial_prompt else []
    # faster-whisper keeps the first tokens of a prefix or hotwords longer than half the text context
    half = model.dims.n_text_ctx // 2 - 1
    hotword_tokens = tokenizer.encode(" " + hotwords.strip())[:half] if hotwords else []
    prefix_tokens = tokenizer.encode(" " + prefix.strip())[:half] if prefix else []
    if prefix_tokens and not without_timestamps:
        prefix_tokens = [tokenizer.timestamp_begin] + prefix_tokens  # the text starts at the window's start

    def with_hotwords(prompt: list, prefixed: bool) -> list:
        # the hotwords lead; the previous text gets what they leave of half the text context
        # (decode() keeps a prompt's last n_text_ctx // 2 - 1 tokens, which would cut the hotwords)
        if not hotword_tokens or prefixed:  # faster-whisper: no hotwords where a prefix is given
            return prompt
        room = half - len(hotword_tokens)
        return hotword_tokens + (prompt[-room:] if room > 0 else [])
    all_tokens, segments = list(prompt_tokens), []
    to_do = n_content if batch_size else sum(end - start for start, end in clip_frames(clips, n_content))
    bar = tqdm(total=round(to_do / FRAMES_PER_SECOND, 2), unit="s", disable=not progress, miniters=1,
               file=sys.stderr, desc="transcribing", bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}]")

    if batch_size:
        # independent windows cut at pauses, decoded batch_size at a time. Where the model stops
        # before the end of its window, the rest goes back in the queue as a window of its own.
        queue = [(s, e - s) for s, e in silence_cuts(audio, n_content, n_window, speech.bounds() if speech else ())]
        silent = [(s, n) for s, n in queue if is_digital_silence(audio, s, n)]
        bar.update(round(sum(n for _, n in silent) / FRAMES_PER_SECOND, 2))
        queue = [w for w in queue if w not in silent]
        while queue:
            # the prefix is the first window's alone: that window is decoded on its own
            n = 1 if prefix_tokens else batch_size
            group, queue = queue[:n], queue[n:]
            mels = torch.stack([window(s, n) for s, n in group])
            # windows are independent: each is a first window, conditioned on the initial prompt only
            prompt = with_hotwords(prompt_tokens, bool(prefix_tokens))
            results = decode_with_fallback(model, mels, prompt=prompt or None, prefix=prefix_tokens or None,
                                           **decode_options)
            prefix_tokens = []
            for (seek, size), mel_window, result in zip(group, mels, results):
                consumed = size
                if not is_no_speech(result, no_speech_threshold, logprob_threshold):
                    pieces, consumed, _ = split_segments(result.tokens, tokenizer, seek / FRAMES_PER_SECOND, size)
                    # a timestamp past the window's end (the model sees zeros there) would overlap the
                    # next window's first segment: windows are cut at pauses, so end them at the cut
                    end = (seek + size) / FRAMES_PER_SECOND
                    current = [make_segment(seek, min(s, end), min(e, end), t, result) for s, e, t in pieces]
                    # windows are independent: no speech is known before this one
                    segments += finish_window(model, tokenizer, current, mel_window, size, word_timestamps,
                                              last_speech=seek / FRAMES_PER_SECOND)[0]
                    if 0 < consumed < size:
                        if is_digital_silence(audio, seek + consumed, size - consumed):
                            consumed = size  # checked like the first windows: nothing to decode there
                        else:
                            queue.append((seek + consumed, size - consumed))
                bar.update(round(consumed / FRAMES_PER_SECOND, 2))
        segments.sort(key=lambda s: s["start"])
    else:
        prompt_reset_since, last_speech = 0, 0.0
        # the reference's rule for a carried prompt: the previous text gets what the initial prompt
        # leaves of half the text context (decode() then keeps the prompt's last n_text_ctx // 2 - 1)
        room = model.dims.n_text_ctx // 2 - 1 - len(prompt_tokens)
        for clip_start, clip_end in clip_frames(clips, n_content):
            seek = clip_start
            while seek < clip_end:
                size = min(n_window, n_content - seek, clip_end - seek)
                # openai-whisper decodes digital silence too (and often writes text there): not in reference mode
                if not reference and is_digital_silence(audio, seek, size):
                    bar.update(round(size / FRAMES_PER_SECOND, 2))
                    seek += size
                    continue
                mel_window = window(seek, size)
                if carry_initial_prompt:
                    prompt = prompt_tokens + all_tokens[max(len(prompt_tokens), prompt_reset_since):][-room:]
                else:
                    prompt = all_tokens[prompt_reset_since:]
                prompt = with_hotwords(prompt, bool(prefix_tokens))
                features = encode(model, mel_window[None])  # the copy check may decode the window again
                result = decode_with_fallback(model, mel_window[None], audio_features=features, prompt=prompt or None,
                                              prefix=prefix_tokens or None, **decode_options)[0]
                previous_text = all_tokens[max(prompt_reset_since, len(prompt_tokens) if carry_initial_prompt else 0):]
                # only a window that seek would leave whole is checked: that is what loses the speech,
                # and audio that really repeats itself (a chorus, a rerun) isn't decoded twice throughout;
                # and only where a pause's length (UNHEARD_PAUSE) or more follows the text's last
                # timestamp: with less, the text reached the window's end and skipped nothing
                skips_window = split_segments(result.tokens, tokenizer, 0.0, size)[1] >= size \
                    and size - last_timestamp(result.tokens, tokenizer) >= UNHEARD_PAUSE * SOUND_STEP
                copied = (copied_runs(result.tokens, previous_text, tokenizer) if skips_window and not reference
                          else set())
                if copied:
                    # the model may have read the previous text back instead of the audio, and would
                    # skip the rest of the window: the window is heard again without it. If it
                    # still says what was copied, the audio repeats itself and the first decoding
                    # stands; if not, the second does, and only what is heard here leads the next window
                    unprompted = with_hotwords(prompt_tokens if carry_initial_prompt else [], bool(prefix_tokens))
                    heard = decode_with_fallback(model, mel_window[None], audio_features=features,
                                                 prompt=unprompted or None,
                                                 prefix=prefix_tokens or None, **decode_options)[0]
                    if not copied & copied_runs(heard.tokens, previous_text, tokenizer):
                        result, prompt_reset_since = heard, len(all_tokens)
                # a quieter speaker beside a loud one is often passed over, a loud sentence's segment
                # stretched across them: where the text runs thin over the window's quiet speech, it
                # is heard again with that speech lifted toward the loud one's level, and the new
                # text is kept if it says more by at least QUIET_RATE words a second of that speech
                quiet = quiet_speech(seek, size, result) if not reference and level == "file" else []
                if quiet and passed_over(result, quiet, seek, size, tokenizer, no_speech_threshold, logprob_threshold):
                    quiet = quiet_speech(seek, size)  # all of it is lifted, the densely said too
                    lifted = pad_or_trim(mel.frames(seek, seek + size, level, lift=quiet), n_window).to(model.dtype)
                    heard = decode_with_fallback(model, lifted[None], prompt=prompt or None,
                                                 prefix=prefix_tokens or None, **decode_options)[0]
                    more = spoken_words(heard, tokenizer, no_speech_threshold, logprob_threshold) - \
                        spoken_words(result, tokenizer, no_speech_threshold, logprob_threshold)
                    # a decoding the fallback had to sample is a guess: the lifted window decoded
                    # cooler is kept if it says no less
                    cooler = heard.temperature < result.temperature
                    if more >= (0 if cooler else QUIET_RATE * sum(b - a for a, b in quiet) / FRAMES_PER_SECOND):
                        result, mel_window = heard, lifted
                prefix_tokens = []  # the first decoded window's only, whatever becomes of it
                previous_seek, time_offset = seek, seek / FRAMES_PER_SECOND
                if is_no_speech(result, no_speech_threshold, logprob_threshold):
                    seek += size
                else:
                    pieces, consumed, single_ending = split_segments(result.tokens, tokenizer, time_offset, size)
                    pieces = [(s, e, t, result) for s, e, t in pieces]  # each with the decoding it came from
                    if not reference:
                        # a segment still stretched thin over quiet speech (the lifted window said no
                        # more) is where the next window starts: there that speech leads the window
                        cut = thin_segment_start(pieces, quiet, seek, tokenizer)
                        if cut is not None:
                            pieces, consumed = [p for p in pieces if p[0] * FRAMES_PER_SECOND < cut], cut - seek
                        levels = step_levels(audio, seek, size)
                        # a lone final timestamp says "no speech after this", and seek would pass the
                        # rest of the window; tiny.en says so after a loud sentence while a quiet
                        # speaker follows: where sound follows a pause there, the next window starts here
                        # noise or a tone between the sentences hides that pause from the levels: then
                        # silero-vad is asked about the rest of the window
                        if consumed >= size:
                            consumed = (unheard_sound_start(levels, result.tokens, tokenizer, size)
                                        or unheard_speech_start(seek, size, result.tokens) or consumed)
                        # Whisper writes text where there is nothing to hear: a segment with nothing
                        # above the window's floor under it is dropped, and doesn't lead the next
                        # window either. The floor is one only where something in the window rises
                        # above it: a window of steady sound throughout keeps its text
                        if any(db > SEGMENT_DB for db in levels):
                            pieces = [p for p in pieces if holds_sound(levels, p[0] - time_offset, p[1] - time_offset)]
                        # a quiet speaker between loud ones is often left out of the window's text
                        # altogether: sound between its segments that silero-vad calls speech is
                        # heard again on its own, clamped to its own loudest frame, as a clip alone is
                        for a, b in unheard_spans(levels, [(p[0] - time_offset, p[1] - time_offset) for p in pieces],
                                                  consumed):
                            if not holds_speech(audio.read((seek + a) * HOP_LENGTH, (seek + b) * HOP_LENGTH)):
                                continue
                            pieces += heard_alone(seek + a, seek + b)
                        # a segment stretched over a pause across two sentences (tiny.en does over noise
                        # or a tone) says one of them at best: each is heard alone instead
                        for p in [p for p in pieces if is_stretched(p, tokenizer)]:
                            spans = speech_in(round(p[0] * FRAMES_PER_SECOND), round(p[1] * FRAMES_PER_SECOND),
                                              UNHEARD_PAUSE * SOUND_STEP / FRAMES_PER_SECOND)  # sentences
                            heard = [q for a, b in spans for q in heard_alone(a, b)] if len(spans) > 1 else []
                            if heard:
                                pieces.remove(p)
                                pieces += heard
                        pieces.sort(key=lambda p: p[0])
                    current = [make_segment(seek, s, e, t, r) for s, e, t, r in pieces]
                    seek += consumed
                    if word_timestamps:
                        from timing import add_word_timestamps

                        add_word_timestamps(model, tokenizer, current, mel_window, size, last_speech_timestamp=last_speech)
                        last_end = speech_end(current)
                        if not single_ending and last_end is not None and last_end > time_offset:
                            seek = round(last_end * FRAMES_PER_SECOND)  # the words say more exactly where speech ended
                        if hallucination_silence_threshold is not None:
                            seek, skip = skip_hallucinations(current, hallucination_silence_threshold, seek,
                                                             previous_seek, size, n_window, n_content, single_ending,
                                                             last_speech)
                            if skip:  # the window started with a long silence: decode again after it
                                continue
                        last_speech = speech_end(current, last_speech)
                    clear_empty_segments(current)  # after the words: the reference judges them first
                    segments += current
                    all_tokens += [t for s in current for t in s["tokens"]]
                    if not condition_on_previous_text or result.temperature > 0.5:
                        prompt_reset_since = len(all_tokens)  # text sampled that hot is no guide
                bar.update(round((min(n_content, seek) - previous_seek) / FRAMES_PER_SECOND, 2))
    bar.close()
    for i, segment in enumerate(segments):
        segment["id"] = i
    text = tokenizer.decode([t for s in segments for t in s["tokens"]])
    result = dict(text=text, segments=segments, language=language, language_probability=language_probability)
    return to_original(result, speech) if speech else result


def passed_over(result, quiet: list, seek: int, size: int, tokenizer, no_speech_threshold, logprob_threshold) -> bool:
    """Whether a window's text may have passed over some of its quiet speech ([(a, b)] frames
    before where the next window starts): no speech said, no segment over a span, or the segments
    over it say fewer than QUIET_PASS words a second."""
    if is_no_speech(result, no_speech_threshold, logprob_threshold):
        return True
    pieces, consumed, _ = split_segments(result.tokens, tokenizer, seek / FRAMES_PER_SECOND, size)
    for a, b in quiet:
        if a >= seek + consumed:
            continue  # the next window starts before it
        start, end = a / FRAMES_PER_SECOND, b / FRAMES_PER_SECOND
        over = [(s, e, t) for s, e, t in pieces if s < end and e > start]
        words = word_count([x for _, _, t in over for x in t], tokenizer)
        if not over or words < QUIET_PASS * sum(e - s for s, e, _ in over):
            return True
    return False


def word_count(tokens: list, tokenizer) -> int:
    """The words that tokens say, timestamps aside."""
    return len(tokenizer.decode([t for t in tokens if t < tokenizer.timestamp_begin]).split())


# a segment this long that says under QUIET_RATE words a second was stretched over a pause
STRETCHED_S = 10.0


def is_stretched(piece, tokenizer) -> bool:
    """Whether a segment (start s, end s, tokens, ...) lasts STRETCHED_S or more and says fewer
    than QUIET_RATE words a second of it."""
    start, end, tokens, *_ = piece
    words = word_count(tokens, tokenizer)
    return end - start >= STRETCHED_S and words < QUIET_RATE * (end - start)


def thin_segment_start(pieces: list, quiet: list, seek: int, tokenizer):
    """The frame where the first of a window's segments (start, end, tokens, ...) that lies over
    some of its quiet speech [(a, b)] frames and says fewer than QUIET_RATE words a second of its
    length starts; None where there is none, or only one that starts less than QUIET_SPEECH into
    the window (the next window would start where this one did)."""
    for start, end, tokens, *_ in pieces:
        a, b = round(start * FRAMES_PER_SECOND), round(end * FRAMES_PER_SECOND)
        if a - seek < QUIET_SPEECH or not any(s < b and e > a for s, e in quiet):
            continue
        words = word_count(tokens, tokenizer)
        if words < QUIET_RATE * (end - start):
            return a
    return None


def said_densely(pieces: list, start: float, end: float, tokenizer) -> bool:
    """Whether segments (start s, end s, tokens, ...) cover seconds start..end without a gap and
    each of those over it says QUIET_PASS words a second of its length or more (then so do any of
    them together); True where end <= start (past where the next window starts)."""
    if end <= start:
        return True
    covered = start
    for s, e, tokens, *_ in sorted(p for p in pieces if p[0] < end and p[1] > start):
        words = word_count(tokens, tokenizer)
        if s > covered or words < QUIET_PASS * (e - s):
            return False
        covered = max(covered, e)
    return covered >= end


def spoken_words(result, tokenizer, no_speech_threshold, logprob_threshold) -> int:
    """The words of a window's decoding, a segment said again word for word counted once (a loop
    says nothing more); none where it is judged no speech."""
    if is_no_speech(result, no_speech_threshold, logprob_threshold):
        return 0
    said, piece = set(), []
    for t in result.tokens + [tokenizer.timestamp_begin]:
        if t < tokenizer.timestamp_begin:
            piece.append(t)
        elif piece:
            said.add(tokenizer.decode(piece).strip())
            piece = []
    return sum(len(text.split()) for text in said)


# a window whose text repeats this many words of the previous text in a row copied its prompt: tiny.en
# does, then ends on a lone timestamp and skips the rest of the window (bench.py --part l, docs/bench.md)
COPY_WORDS = 8


def copied_runs(tokens: list, previous: list, tokenizer, n: int = COPY_WORDS) -> set:
    """The runs of n words of a window's text (inside one segment: no timestamp among them) that
    occur, in order, in the previous text; words compared in lower case without punctuation, so a
    comma doesn't hide a copy."""
    def words(ts):
        text = tokenizer.decode([t for t in ts if t < tokenizer.timestamp_begin]).lower()
        return "".join(c if c.isalnum() or c == "'" else " " for c in text).split()

    def runs(ws):
        return {tuple(ws[i:i + n]) for i in range(len(ws) - n + 1)}

    pieces, piece = [], []
    for t in list(tokens) + [tokenizer.timestamp_begin]:
        if t >= tokenizer.timestamp_begin:
            pieces.append(piece)
            piece = []
        else:
            piece.append(t)
    return set().union(*(runs(words(p)) for p in pieces if p)) & runs(words(previous))


# the default's sound checks (issue 21, docs/bench.md part l) read the audio in 50 ms steps, each
# step's level taken above the window's quietest (its floor: digital silence or the recording's noise)
SOUND_STEP = 5  # mel frames
# a segment is dropped only where nothing under it rises SEGMENT_DB above the floor: the level of a
# steady noise holds within a dB from step to step, and speech that Whisper can still read in
# noise (a few dB over it) keeps its text
SEGMENT_DB = 6.0
SEGMENT_SLACK = 0.5  # seconds either side of a segment that may hold its sound: tiny.en's timestamps are coarse
# speech after a lone final timestamp: UNHEARD_STEPS steps UNHEARD_DB above the floor (clearly sound:
# it costs a window's decoding) after a pause of UNHEARD_PAUSE steps (1 s; not the half second
# between sentences of continuous speech: on bench part (a)'s file such a window was a copy the copy
# check kept, and decoding its rest again wrote a sentence twice)
UNHEARD_DB = 15.0
UNHEARD_PAUSE = 20
UNHEARD_STEPS = 4


def step_levels(audio, seek: int, size: int) -> list:
    """The dB above the window's floor of each SOUND_STEP of frames seek..seek+size (an audio_source())."""
    n = size // SOUND_STEP
    energy = step_energy(audio, n, SOUND_STEP * HOP_LENGTH, start=seek * HOP_LENGTH)
    floor = max(float(energy.min()) if n else 0.0, SILENCE_PEAK ** 2)
    return (10 * torch.log10(energy.clamp(min=floor) / floor)).tolist()


def segment_steps(start: float, end: float) -> range:
    """The SOUND_STEPs of a segment's seconds start..end into its window, SEGMENT_SLACK wider."""
    return range(max(0, math.floor((start - SEGMENT_SLACK) * FRAMES_PER_SECOND / SOUND_STEP)),
                 math.ceil((end + SEGMENT_SLACK) * FRAMES_PER_SECOND / SOUND_STEP))


def holds_sound(levels: list, start: float, end: float) -> bool:
    """Whether the window's seconds start..end (SEGMENT_SLACK wider) hold anything above its floor."""
    steps = segment_steps(start, end)
    return any(db > SEGMENT_DB for db in levels[steps.start:steps.stop])


def last_timestamp(tokens: list, tokenizer) -> int:
    """The frames into its window of a decoding's last timestamp; 0 where it has none."""
    stamps = [t - tokenizer.timestamp_begin for t in tokens if t >= tokenizer.timestamp_begin]
    return round(stamps[-1] * TIME_PER_TOKEN * FRAMES_PER_SECOND) if stamps else 0


def unheard_sound_start(levels: list, tokens: list, tokenizer, size: int):
    """Where the next window should start (frames into this one) when this one's text ends on a lone
    timestamp but the audio after it holds UNHEARD_STEPS of sound after a pause: that timestamp.
    None where nothing is left unheard (or there is no timestamp past the window's start)."""
    last = last_timestamp(tokens, tokenizer)
    if not 0 < last < size:
        return None
    after, quiet = [db > UNHEARD_DB for db in levels[last // SOUND_STEP:]], 0
    for i, loud in enumerate(after):  # the end of what the text said, then the first real pause
        quiet = 0 if loud else quiet + 1
        if quiet >= UNHEARD_PAUSE:
            return last if sum(after[i:]) >= UNHEARD_STEPS else None
    return None


# sound that no segment of a window covers (SEGMENT_SLACK either side) is heard again alone where
# it holds UNHEARD_STEPS of steps UNHEARD_DB above the floor; RESCUE_PAD steps either side of them
RESCUE_PAD = 4


def unheard_spans(levels: list, segments: list, consumed: int) -> list:
    """The (start, stop) frames of the window's first `consumed` frames that hold sound no segment
    covers: each stretch between two segments (seconds into the window, SEGMENT_SLACK wider) with
    UNHEARD_STEPS of steps above UNHEARD_DB, cut RESCUE_PAD steps around its loud steps. Only
    between two: before the first may be the tail of the previous window's last sentence, and
    after the last a timestamp that came early (tiny.en's are often whole seconds) leaves its own
    sentence's end; what follows the text is the next window's, or unheard_sound_start's."""
    n = min(len(levels), consumed // SOUND_STEP)
    covered = [False] * n
    for start, end in segments:
        for i in segment_steps(start, end):
            if i < n:
                covered[i] = True
    spans, i = [], 0
    while i < n:
        if covered[i]:
            i += 1
            continue
        j = i
        while j < n and not covered[j]:
            j += 1
        loud = [k for k in range(i, j) if levels[k] > UNHEARD_DB]
        if 0 < i and j < n and len(loud) >= UNHEARD_STEPS:
            spans.append((max(i, loud[0] - RESCUE_PAD) * SOUND_STEP, min(j, loud[-1] + 1 + RESCUE_PAD) * SOUND_STEP))
        i = j
    return spans


def speech_end(segments: list, default=None):
    """The reference's get_end: the end of the last word, else of the last segment, else `default`."""
    return next((w["end"] for s in reversed(segments) for w in reversed(s["words"])),
                segments[-1]["end"] if segments else default)


def parse_clip_timestamps(value) -> list:
    """clip_timestamps as openai-whisper reads them ("start,end,start,..." seconds, or a list; "0"
    or "" is the whole file), refused with a ValueError where the reference would silently go wrong:
    not a number, negative, or a clip that doesn't start after the one before and end after it starts."""
    if isinstance(value, str):
        items = [item.strip() for item in value.split(",")] if value.strip() else []
        try:
            times = [float(item) for item in items]
        except ValueError:
            raise ValueError(f"clip timestamps: expected comma-separated seconds start,end,start,..., got {value!r}")
    else:
        times = [float(t) for t in value]
    if any(not math.isfinite(t) or t < 0 for t in times):
        raise ValueError(f"clip timestamps: expected finite seconds of 0 or more, got {value!r}")
    # a clip's end after its start; the next clip's start at or after that end (the reference would
    # decode an overlap twice, or skip a clip that ends before its start)
    if any(b < a or (b == a and i % 2 == 0) for i, (a, b) in enumerate(zip(times, times[1:]))):
        raise ValueError(f"clip timestamps: expected increasing start,end pairs that don't overlap, got {value!r}")
    return times


def clip_frames(times: list, n_content: int) -> list:
    """[(start_frame, end_frame)] of the clips, as the reference pairs them (no times: the whole
    file; an odd count: the last clip runs to the end). Ends past the audio's end are cut there:
    the reference would go on decoding zero-length windows."""
    points = [round(t * FRAMES_PER_SECOND) for t in times] or [0]
    if len(points) % 2 == 1:
        points.append(n_content)
    return [(start, min(end, n_content)) for start, end in zip(points[::2], points[1::2]) if start < n_content]


def check_long_form_options(*, batch_size=None, word_timestamps=False, clip_timestamps=None,
                            hallucination_silence_threshold=None, timestamps=True, prefix=None, hotwords=None,
                            vad=False):
    """A ValueError, before any work, for options that would otherwise be silently ignored."""
    for name, text in (("--prefix", prefix), ("--hotwords", hotwords)):
        if text is not None and not text.strip():
            raise ValueError(f"{name}: expected some text, got {text!r}")
    clipped = bool(clip_timestamps) and list(clip_timestamps) != [0.0]
    if clipped and vad:
        raise ValueError("--clip-timestamps can't be used with --vad: the clips' times are the audio's, "
                         "and --vad leaves only its speech")
    if hallucination_silence_threshold is not None:
        if not math.isfinite(hallucination_silence_threshold) or hallucination_silence_threshold < 0:
            raise ValueError("--hallucination-silence-threshold: expected seconds of 0 or more, "
                             f"got {hallucination_silence_threshold}")
        if not word_timestamps:
            raise ValueError("--hallucination-silence-threshold needs --word-timestamps: it judges the words' timings")
    for name, given in (("--clip-timestamps", clipped), ("--hallucination-silence-threshold",
                                                         hallucination_silence_threshold is not None)):
        if given and batch_size:
            raise ValueError(f"{name} works window after window; it can't be used with --batch-size")
        if given and not timestamps:
            raise ValueError(f"{name}: this model was trained without timestamps, so it is cut at pauses instead")


# the reference's punctuation for skipping words in the hallucination score (both sets, joined)
PUNCTUATION = "\"'“¿([{-\"'.。,，!！?？:：”)]}、"


def word_anomaly_score(word: dict) -> float:
    """How unlike speech a word is: improbable, very short, or stretched over seconds."""
    probability, duration = word.get("probability", 0.0), word["end"] - word["start"]
    score = 0.0
    if probability < 0.15:
        score += 1.0
    if duration < 0.133:
        score += (0.133 - duration) * 15
    if duration > 2.0:
        score += duration - 2.0
    return score


def is_segment_anomaly(segment) -> bool:
    """Whether a segment's first 8 words (punctuation aside) look hallucinated, as the reference judges."""
    if segment is None or not segment["words"]:
        return False
    words = [w for w in segment["words"] if w["word"] not in PUNCTUATION][:8]
    score = sum(word_anomaly_score(w) for w in words)
    return score >= 3 or score + 0.01 >= len(words)


def skip_hallucinations(current: list, threshold: float, seek: int, previous_seek: int, size: int, n_window: int,
                        n_content: int, single_ending: bool, last_speech: float):
    """openai-whisper's hallucination_silence_threshold for one window whose segments (`current`)
    have words: Whisper invents text over long silences, so a suspect segment with silence on both
    sides is dropped with everything after it, and the next window starts past the silence.
    Returns (seek, whether to drop the whole window and decode again from seek)."""
    time_offset = previous_seek / FRAMES_PER_SECOND
    window_end = (previous_seek + n_window) / FRAMES_PER_SECOND
    if not single_ending:
        last_end = speech_end(current)
        if last_end is not None and last_end > time_offset:
            # little left after the last word: the window's end is no silence to step over
            seek = round(last_end * FRAMES_PER_SECOND) if window_end - last_end > threshold else previous_seek + size
    # a suspect first segment after a long silence: decode again from where it starts
    first = next((s for s in current if s["words"]), None)
    if first is not None and is_segment_anomaly(first):
        gap = first["start"] - time_offset
        if gap > threshold:
            return previous_seek + round(gap * FRAMES_PER_SECOND), True
    # a suspect segment between silences (or other suspects): drop it and what follows
    last_end = last_speech
    for i, segment in enumerate(current):
        if not segment["words"]:
            continue
        if is_segment_anomaly(segment):
            following = next((s for s in current[i + 1:] if s["words"]), None)
            next_start = following["words"][0]["start"] if following is not None else time_offset + size / FRAMES_PER_SECOND
            silence_before = segment["start"] - last_end > threshold or segment["start"] < threshold \
                or segment["start"] - time_offset < 2.0
            silence_after = next_start - segment["end"] > threshold or is_segment_anomaly(following) \
                or window_end - segment["end"] < 2.0
            if silence_before and silence_after:
                seek = round(max(time_offset + 1, segment["start"]) * FRAMES_PER_SECOND)
                if n_content / FRAMES_PER_SECOND - segment["end"] < threshold:
                    seek = n_content
                del current[i:]
                break
        last_end = segment["end"]
    return seek, False


def is_no_speech(result, no_speech_threshold, logprob_threshold) -> bool:
    """The reference's skip rule: <|nospeech|> is likely and the text is not confidently likely."""
    return no_speech_threshold is not None and result.no_speech_prob > no_speech_threshold and not (
        logprob_threshold is not None and result.avg_logprob > logprob_threshold)


def is_digital_silence(audio, start_frame: int, n_frames: int) -> bool:
    """Whether mel frames start_frame.. of an audio_source() hold no sample above -80 dBFS (or none at all)."""
    return audio.frame_peak(start_frame, start_frame + n_frames) < SILENCE_PEAK


def transcribe_short_windows(model, audio, *, batch_size=None, word_timestamps=False, language=None,
                             task="transcribe", progress=False, **decode_options) -> dict:
    """For models trained without timestamps (`model.timestamps` False; see check_options): they
    can't say where their text ends, so the audio is cut at pauses into windows of the model's
    length, each padded exactly as in training (log_mel_spectrogram(pad_or_trim(window))) and
    decoded on its own, one segment per window, with decode_with_fallback's temperature fallback
    (`decode_options` are its keywords). Word timestamps align each window's text to its audio."""
    from tqdm import tqdm

    audio = audio_source(audio)
    known = check_options(model, language=language, task=task)
    # no detection: such a model was trained to transcribe English; a multilingual one is assumed to
    # hear English, at no stated probability
    language, probability = (known, 1.0) if known else ("en", None)
    tokenizer = get_tokenizer(model.is_multilingual, model.num_languages, language, task)
    n_window = window_frames(model.dims.n_audio_ctx)
    cuts = [(s, e) for s, e in silence_cuts(audio, len(audio) // HOP_LENGTH, n_window)
            if not is_digital_silence(audio, s, e - s)]
    bar = tqdm(total=len(cuts), unit="window", disable=not progress, file=sys.stderr, desc="transcribing")
    segments, last_speech = [], 0.0
    for first in range(0, len(cuts), batch_size or 1):
        group = cuts[first : first + (batch_size or 1)]
        mels = torch.stack([window_mel(audio.read(s * HOP_LENGTH, e * HOP_LENGTH), model.dims) for s, e in group])
        mels = mels.to(model.device, model.dtype)
        results = decode_with_fallback(model, mels, tokenizer=tokenizer, timestamps=False, **decode_options)
        for (start, end), mel_window, r in zip(group, mels, results):
            if is_no_speech(r, decode_options.get("no_speech_threshold"), decode_options.get("logprob_threshold")):
                continue
            segment = dict(seek=start, start=start / FRAMES_PER_SECOND, end=end / FRAMES_PER_SECOND, text=" " + r.text,
                           tokens=r.tokens, temperature=r.temperature, avg_logprob=r.avg_logprob,
                           compression_ratio=r.compression_ratio, no_speech_prob=r.no_speech_prob)
            [segment], last_speech = finish_window(model, tokenizer, [segment], mel_window, end - start,
                                                   word_timestamps, last_speech)
            if segment["text"].strip():
                segments.append(dict(id=len(segments), **segment))
        bar.update(len(group))
    bar.close()
    return dict(text=" ".join(s["text"].strip() for s in segments), segments=segments, language=language,
                language_probability=probability)


def check_options(model, *, initial_prompt=None, language=None, task="transcribe", prefix=None, hotwords=None):
    """The language code to decode in (None: detect it), or a one-line ValueError for an option
    this model can't honour. A model trained without timestamps (`model.timestamps` False, read
    from its checkpoint by pretrained.load_checkpoint) is transcribed window by window with no
    previous text, and was trained to transcribe English without prompts: it refuses a prompt,
    another language and translation rather than quietly ignoring them."""
    code = check_language(model, language, task)
    if getattr(model, "timestamps", True):
        return code
    why = "this model was trained without timestamps, so it only transcribes English, window by window"
    for name, given in (("--initial-prompt", initial_prompt), ("--hotwords", hotwords), ("--prefix", prefix)):
        if given:
            raise ValueError(f"{name}: {why}, and was never trained on a prompt or a prefix")
    if task != "transcribe":
        raise ValueError(f"--task {task}: {why}")
    if code not in (None, "en"):
        raise ValueError(f"--language {language}: {why}")
    return code


def finish_window(model, tokenizer, segments, mel_window, n_frames, word_timestamps, last_speech=0.0):
    """Word timings for a window's segments, then empty out segments with no duration or no text.
    Returns (segments, end of the last speech so far)."""
    if word_timestamps:
        from timing import add_word_timestamps

        last_speech = add_word_timestamps(model, tokenizer, segments, mel_window, n_frames,
                                          last_speech_timestamp=last_speech)
    return clear_empty_segments(segments), last_speech


def clear_empty_segments(segments: list) -> list:
    """Empty out (in place) the segments with no duration or no text, as the reference does."""
    for segment in segments:
        if segment["start"] == segment["end"] or not segment["text"].strip():
            segment.update(text="", tokens=[], words=[])
    return segments


def silence_cuts(audio, n_content: int, max_frames: int = N_FRAMES, bounds=()) -> list:
    """Windows of at most max_frames (30 s) for batched decoding, each cut in the middle of the
    longest pause in the second half of that span, so that words are rarely cut in two and each
    window starts and ends in silence. `bounds` (frames, ascending) are better cuts where one lies
    in the span: the last of them is taken (vad.SpeechAudio's seams between stretches of speech).
    `audio`: samples or an audio_source(). Returns [(start_frame, end_frame)]."""
    min_frames = max_frames // 2
    hop = 5  # energy over 50 ms steps
    energy = step_energy(audio_source(audio), -(-n_content // hop), hop * HOP_LENGTH)
    cuts, start = [], 0
    while n_content - start > max_frames:
        seam = bisect.bisect_right(bounds, start + max_frames) - 1
        if seam >= 0 and bounds[seam] > start:
            cuts.append((start, bounds[seam]))
            start = bounds[seam]
            continue
        lo, hi = (start + min_frames) // hop, (start + max_frames) // hop
        span = energy[lo:hi]
        quiet = span <= max(float(span.min()) * 4, float(span.max()) * 1e-3)  # within 6 dB of the floor
        best, best_len, run = int(torch.argmin(span)), 0, 0
        for i, q in enumerate(quiet.tolist()):  # the longest run of quiet steps
            run = run + 1 if q else 0
            if run > best_len:
                best, best_len = i - run // 2, run
        end = min((lo + best) * hop + hop // 2, start + max_frames)
        cuts.append((start, end))
        start = end
    cuts.append((start, n_content))
    return cuts


def step_energy(audio, n_steps: int, step: int, start: int = 0) -> torch.Tensor:
    """Mean square of each `step` samples from sample `start` on (zeros past the end), read a minute
    at a time: a file is never in memory whole."""
    energy, per_read = [], max(1, 60 * SAMPLE_RATE // step)
    for a in range(0, n_steps, per_read):
        b = min(n_steps, a + per_read)
        samples = audio.read(start + a * step, start + b * step).float()
        samples = torch.nn.functional.pad(samples, (0, (b - a) * step - len(samples)))
        energy.append(samples.view(b - a, step).pow(2).mean(dim=1))
    return torch.cat(energy) if energy else torch.zeros(0)


def check_language(model, language, task):
    """The language code to decode in (None: detect it), or a ValueError saying why not."""
    if not model.is_multilingual:
        if task == "translate":
            raise ValueError("--task translate needs a multilingual model; this one is English-only")
        if language is not None and TO_LANGUAGE_CODE.get(language.lower(), language.lower()) != "en":
            raise ValueError(f"--language {language}: this model is English-only")
        return "en"
    if language is None:
        return None
    code = TO_LANGUAGE_CODE.get(language.lower(), language.lower())
    if code not in list(LANGUAGES)[: model.num_languages]:
        raise ValueError(f"--language {language}: unknown language; use a code like en, de, ja or a name like german")
    return code


def resolve_language(model, mel: LongFormMel, language, task, level: str = "file"):
    """(code, probability): the given language (or English, for an English-only model) with
    probability 1.0, as faster-whisper reports it, or the one detected on the first window (30 s for official models)."""
    code = check_language(model, language, task)
    if code is not None:
        return code, 1.0

    # openai-whisper detects on the first window of the padded mel: past short audio's end the frames
    # are the mel of the appended zeros, not zero-valued frames as in a decoded window
    first = mel.frames(0, window_frames(model.dims.n_audio_ctx), level).to(model.dtype)
    tokenizer = get_tokenizer(True, model.num_languages)
    code, probs = detect_language(model, encode(model, first[None]), tokenizer)[0]
    return code, probs[code]


# ------------------------------------------------------------------------------------------------
# output formats


def format_timestamp(seconds: float, always_hours: bool = False, decimal: str = ".") -> str:
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    hours_part = f"{hours:02d}:" if always_hours or hours > 0 else ""
    return f"{hours_part}{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def to_txt(result: dict) -> str:
    return "".join(s["text"].strip() + "\n" for s in result["segments"] if s["text"].strip())


def to_srt(result: dict) -> str:
    cues = [s for s in result["segments"] if s["text"].strip()]
    return "\n".join(
        f"{i}\n{format_timestamp(s['start'], True, ',')} --> {format_timestamp(s['end'], True, ',')}\n"
        f"{s['text'].strip().replace('-->', '->')}\n"
        for i, s in enumerate(cues, start=1)
    )


def to_vtt(result: dict) -> str:
    cues = [s for s in result["segments"] if s["text"].strip()]
    return "WEBVTT\n\n" + "\n".join(
        f"{format_timestamp(s['start'])} --> {format_timestamp(s['end'])}\n{s['text'].strip().replace('-->', '->')}\n"
        for s in cues
    )


def to_tsv(result: dict) -> str:
    rows = ["start\tend\ttext"]  # integer milliseconds, as the reference writes them
    rows += [f"{round(1000 * s['start'])}\t{round(1000 * s['end'])}\t{s['text'].strip().replace(chr(9), ' ')}"
             for s in result["segments"] if s["text"].strip()]
    return "\n".join(rows) + "\n"


def to_json(result: dict) -> str:
    return json.dumps(result, ensure_ascii=False)


WRITERS = {"txt": to_txt, "srt": to_srt, "vtt": to_vtt, "tsv": to_tsv, "json": to_json}


def output_path(audio_path: str, output_dir: str, fmt: str) -> str:
    """Where the `fmt` output of `audio_path` goes: <output_dir>/<the audio's stem>.<fmt>."""
    return os.path.join(output_dir, f"{os.path.splitext(os.path.basename(audio_path))[0]}.{fmt}")


def write_outputs(result: dict, audio_path: str, output_dir: str, formats: list) -> list:
    """One file per format, named after the audio, each written atomically (files.atomic_write);
    temporaries that a killed run left beside an output are removed first."""
    written = []
    for fmt in formats:
        path = output_path(audio_path, output_dir, fmt)
        remove_stale_temps(path)
        with atomic_write(path, "w", encoding="utf-8") as f:
            f.write(WRITERS[fmt](result))
        written.append(path)
    return written


def same_outputs(paths: list, output_dir: str, formats: list) -> list:
    """[(first input, second input, output)] for inputs whose outputs would have one name, e.g.
    a/x.flac and b/x.ogg both writing x.txt. They are refused before any work, rather than named
    apart: a renamed output (x-1.txt) would leave the user to guess which input it came from."""
    seen, clashes = {}, []
    for path in paths:
        out = os.path.normcase(os.path.abspath(output_path(path, output_dir, formats[0])))
        if out in seen and os.path.abspath(seen[out]) != os.path.abspath(path):
            clashes.append((seen[out], path, output_path(path, output_dir, formats[0])))
        seen.setdefault(out, path)
    return clashes


# ------------------------------------------------------------------------------------------------
# command line


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def temperatures(start: float, increment: float) -> tuple:
    """start, start + increment, ... up to 1.0; a start above 1.0 is tried alone, not skipped."""
    if increment is None or increment <= 0:
        return (start,)
    return tuple(np.arange(start, 1.0 + 1e-6, increment).round(2).tolist()) or (start,)


def positive_int(x: str) -> int:
    value = int(x)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {x}")
    return value


def number(x: str) -> float:
    """A float that is a number: NaN compares false with everything, so it would quietly switch
    a threshold off or make a temperature undefined."""
    value = float(x)
    if math.isnan(value):
        raise argparse.ArgumentTypeError(f"expected a number, got {x}")
    return value


def finite_number(x: str) -> float:
    value = number(x)
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {x}")
    return value


def temperature(x: str) -> float:
    value = finite_number(x)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a temperature of 0 or more, got {x}")
    return value


def positive_number(x: str) -> float:
    value = finite_number(x)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {x}")
    return value


def fraction(x: str) -> float:
    value = finite_number(x)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {x}")
    return value


def none_if_negative(x: str):
    value = number(x)
    return None if value < 0 else value


def seconds_type(x: str) -> float:
    value = finite_number(x)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected seconds of 0 or more, got {x}")
    return value


def clip_timestamps(x: str) -> str:
    """--clip-timestamps as given, once parse_clip_timestamps accepts it."""
    try:
        parse_clip_timestamps(x)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("clip timestamps: "))
    return x


def token_ids(x: str) -> str:
    """--suppress-tokens as given, once every comma-separated item is a token id or -1."""
    items = [item.strip() for item in x.split(",") if item.strip()]
    if not all(item == "-1" or (item.isascii() and item.isdigit()) for item in items):
        raise argparse.ArgumentTypeError(f"expected comma-separated token ids (or -1), got {x!r}")
    return x


def main(argv=None) -> int:
    p = OneLineErrors(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", nargs="+", help="audio files: flac, wav, ogg, mp3, ...")
    p.add_argument("--model", default="tiny.en", help="official name, .pt file, CTranslate2 dir or training checkpoint")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--dtype", choices=list(DTYPES), default=None,
                   help="default: fp16 on GPU, fp32 on CPU; int8: weights quantised for CPU, the fastest there")
    p.add_argument("--threads", type=positive_int, default=None, help="CPU threads (default: torch's, one per core)")
    p.add_argument("--language", default=None, help="multilingual models: code or name (default: detect)")
    p.add_argument("--task", choices=["transcribe", "translate"], default="transcribe")
    p.add_argument("--beam-size", type=positive_int, default=5, help="beam width at temperature 0; 1 decodes greedily")
    p.add_argument("--best-of", type=positive_int, default=5, help="samples per window when falling back to temperature > 0")
    p.add_argument("--patience", type=positive_number, default=None,
                   help="beam search patience (finished candidates = beam * patience)")
    p.add_argument("--length-penalty", type=fraction, default=None,
                   help="alpha of Google NMT's length penalty, 0 to 1 (default: divide by length)")
    p.add_argument("--temperature", type=temperature, default=0.0)
    p.add_argument("--temperature-increment-on-fallback", type=finite_number, default=0.2,
                   help="0 disables the fallback")
    p.add_argument("--compression-ratio-threshold", type=none_if_negative, default=2.4, help="negative disables")
    p.add_argument("--logprob-threshold", type=none_if_negative_or_any, default=-1.0, help="'none' disables")
    p.add_argument("--no-speech-threshold", type=none_if_negative, default=0.6, help="negative disables")
    p.add_argument("--condition-on-previous-text", type=str_to_bool, default=True)
    p.add_argument("--initial-prompt", default=None, help="text to condition the first window on (names, spelling)")
    p.add_argument("--carry-initial-prompt", action="store_true",
                   help="put --initial-prompt before every window's prompt, not only the first's")
    p.add_argument("--prefix", default=None, metavar="TEXT",
                   help="the first window's text starts with this; the model continues it (faster-whisper's)")
    p.add_argument("--hotwords", default=None, metavar="TEXT",
                   help="words to expect, put before the previous text in each window's prompt (faster-whisper's)")
    p.add_argument("--without-timestamps", action="store_true",
                   help="decode text only: one segment per window, covering the window")
    p.add_argument("--suppress-tokens", type=token_ids, default="-1", help="comma-separated ids; -1 is the non-speech symbols")
    p.add_argument("--word-timestamps", action="store_true", help="word timings from cross-attention (DTW)")
    p.add_argument("--clip-timestamps", type=clip_timestamps, default="0", metavar="START,END,...",
                   help="transcribe only these clips (seconds); an odd count runs the last to the end; 0: all")
    p.add_argument("--hallucination-silence-threshold", type=seconds_type, default=None, metavar="SECONDS",
                   help="with --word-timestamps: skip silences longer than this around text that looks hallucinated")
    p.add_argument("--batch-size", type=positive_int, default=None, help="decode windows cut at silences N at a time")
    p.add_argument("--vad", action="store_true",
                   help="transcribe only the speech silero-vad finds (faster-whisper's vad_filter); times stay the "
                        "audio's. Needs: pip install --no-deps silero-vad")
    p.add_argument("--reference", action="store_true",
                   help="openai-whisper's exact algorithm: every window's log-mel clamped 80 dB below the whole "
                        "file's loudest moment, whatever the default --level")
    p.add_argument("--level", choices=LEVELS, default=None,
                   help=f"how each window's level is set: clamped below the file's loudest moment (file), below "
                        f"its own (window), lifted to the file's loudest first (gain), or a gain that follows "
                        f"each speaker's level inside the window (agc); default: {DEFAULT_LEVEL}. See bench.py --part l")
    p.add_argument("--output-format", choices=["txt", "srt", "vtt", "json", "tsv", "all"], default=None,
                   help="write files to --output-dir (default: the text on stdout)")
    p.add_argument("--output-dir", default=None, help="where --output-format files go (default: .)")
    args = p.parse_args(argv)

    from pretrained import CheckpointError, check_device, from_pretrained

    try:  # every option is checked before the model is loaded or an output written
        device = check_device(args.device or default_device())
        if args.dtype == "int8" and device != "cpu":
            raise ValueError("--dtype int8 runs on the CPU only; on a GPU use fp16 or bf16")
        if args.reference and args.level not in (None, "file"):
            raise ValueError(f"--reference is openai-whisper's --level file; it can't be used with --level {args.level}")
        if args.carry_initial_prompt and not args.initial_prompt:
            raise ValueError("--carry-initial-prompt needs --initial-prompt: there is no prompt to carry")
        check_long_form_options(batch_size=args.batch_size, word_timestamps=args.word_timestamps,
                                clip_timestamps=parse_clip_timestamps(args.clip_timestamps),
                                hallucination_silence_threshold=args.hallucination_silence_threshold,
                                prefix=args.prefix, hotwords=args.hotwords, vad=args.vad)
        if args.vad:
            from vad import model_path

            model_path()  # installed, or how to install it
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = DTYPES[args.dtype or ("fp16" if device.startswith("cuda") else "fp32")]
    output_dir = args.output_dir or ("." if args.output_format else None)
    formats = None if not args.output_format else (list(WRITERS) if args.output_format == "all" else [args.output_format])
    if output_dir is not None:
        formats = formats or ["txt"]
        if clashes := same_outputs(args.files, output_dir, formats):
            first, second, out = clashes[0]
            print(f"error: {first} and {second} would both be written to {out}; transcribe them into different "
                  "--output-dir directories, or rename one", file=sys.stderr)
            return 2
        if problem := unwritable(output_dir):
            print(f"error: {problem}", file=sys.stderr)
            return 2
    try:
        t0 = time.time()
        model = from_pretrained(args.model, device=device, dtype=dtype)
        if args.dtype == "int8":
            from quantize import quantize_int8

            model = quantize_int8(model)
        print(f"loaded {args.model} on {device} in {time.time() - t0:.1f}s", file=sys.stderr)
        check_options(model, initial_prompt=args.initial_prompt, language=args.language, task=args.task,
                      prefix=args.prefix, hotwords=args.hotwords)
        check_long_form_options(clip_timestamps=parse_clip_timestamps(args.clip_timestamps),
                                hallucination_silence_threshold=args.hallucination_silence_threshold,
                                word_timestamps=args.word_timestamps, timestamps=getattr(model, "timestamps", True))
        if too_big := [t for t in args.suppress_tokens.split(",") if t.strip() and int(t) >= model.dims.n_vocab]:
            raise ValueError(f"--suppress-tokens {too_big[0].strip()}: the model's tokens are 0 to {model.dims.n_vocab - 1}")
    except (CheckpointError, RuntimeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    options = dict(beam_size=args.beam_size, best_of=args.best_of, patience=args.patience,
                   length_penalty=args.length_penalty,
                   temperature=temperatures(args.temperature, args.temperature_increment_on_fallback),
                   compression_ratio_threshold=args.compression_ratio_threshold,
                   logprob_threshold=args.logprob_threshold, no_speech_threshold=args.no_speech_threshold,
                   condition_on_previous_text=args.condition_on_previous_text, initial_prompt=args.initial_prompt,
                   word_timestamps=args.word_timestamps, language=args.language, task=args.task,
                   batch_size=args.batch_size, suppress_tokens=args.suppress_tokens,
                   clip_timestamps=args.clip_timestamps, carry_initial_prompt=args.carry_initial_prompt,
                   hallucination_silence_threshold=args.hallucination_silence_threshold, prefix=args.prefix,
                   hotwords=args.hotwords, without_timestamps=args.without_timestamps, reference=args.reference,
                   level=args.level, vad=args.vad)

    failed = 0
    for path in args.files:
        try:
            audio = AudioFile(path)  # checked whole here, then read a span at a time
            t0 = time.time()
            result = transcribe(model, audio, progress=len(audio) > 60 * SAMPLE_RATE, **options)
        except (AudioError, ValueError) as e:
            message = str(e) if str(e).startswith(str(path)) else f"{path}: {e}"
            print(f"error: {message}", file=sys.stderr)
            failed += 1
            continue
        seconds = len(audio) / SAMPLE_RATE
        was_detected = model.is_multilingual and args.language is None and result["language_probability"] is not None
        detected = "" if not was_detected else \
            f", detected {LANGUAGES[result['language']]} (p={result['language_probability']:.2f})"
        print(f"{path}: {seconds:.1f}s of audio in {time.time() - t0:.1f}s{detected}", file=sys.stderr)
        if formats:
            try:
                for written in write_outputs(result, path, output_dir, formats):
                    print(f"wrote {written}", file=sys.stderr)
            except OSError as e:
                print(f"error: {path}: could not write output ({e})", file=sys.stderr)
                failed += 1
        else:
            text = result["text"].strip()
            print(text if len(args.files) == 1 else f"{path}: {text}", flush=True)
    if failed:
        print(f"{failed} of {len(args.files)} files failed", file=sys.stderr)
    return 1 if failed else 0


def str_to_bool(x: str) -> bool:
    if x.lower() in ("true", "1", "yes"):
        return True
    if x.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {x!r}")


def none_if_negative_or_any(x: str):
    return None if x.lower() == "none" else number(x)


def exit_now(code: int):
    """Exit without Python's interpreter shutdown, a noticeable part of a short run's time spent
    tearing down torch. Everything we write is closed by now; only the standard streams need a flush."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away (`| head`), or a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
