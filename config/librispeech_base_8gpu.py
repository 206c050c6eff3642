# Whisper base (74M parameters) from scratch on LibriSpeech 960 h, one node of 8 GPUs:
#
#   python prepare_librispeech.py --librispeech-dir ~/LibriSpeech --out data/librispeech --window-seconds 30
#   torchrun --standalone --nproc_per_node=8 train.py config/librispeech_base_8gpu.py
#
# Expects data/librispeech with train-clean-100, train-clean-360, train-other-500 as `train` and
# dev-clean/dev-other as `val` (test-* are never trained on), and 8 GPUs with >= 40 GB each (A100/H100).
# The windows are Whisper's: 30 s of consecutive utterances of a chapter, with timestamps in half of them
# (train.py's timestamp_probability) and the previous window's text as a prompt in a tenth.
# The optimizer follows the Whisper paper (AdamW 0.9/0.98, eps 1e-6, wd 0.1, 2048 warmup steps,
# linear decay, clip 1.0, 256 segments per step, lr 1e-3 for base). Unlike Whisper, which saw 680k
# hours once, this sees 960 h ~45 times, so it regularises: SpecAugment and dropout 0.1.
# Not run here (no GPUs on the development machine): the schedule is a starting point, not a result.
out_dir = "out-librispeech-base"
data_dir = "data/librispeech"
init_from = "scratch"

# base dimensions; the full 30 s window: LibriSpeech utterances run up to ~35 s (prepare skips > 30 s)
n_audio_ctx = 1500
n_audio_state = 512
n_audio_head = 8
n_audio_layer = 6
n_text_state = 512
n_text_head = 8
n_text_layer = 6
dropout = 0.1
spec_augment = True

batch_size = 32  # per GPU and micro-step
gradient_accumulation_steps = 8  # 32 x 8 = 256 utterances per step, whatever the number of GPUs (divided by it)
learning_rate = 1e-3
min_lr = 0.0
lr_schedule = "linear"
warmup_iters = 2048
max_iters = 50000  # ~45 epochs of 281k utterances
lr_decay_iters = 50000

eval_interval = 1000
eval_iters = 20
eval_wer_utts = 512
log_interval = 50
compile = True  # bf16 autocast is on by default on GPUs that support it
