# Fine-tune the official tiny.en on the synthetic corpus, on 2 CPU cores in about 15 minutes:
#
#   python prepare_synthetic.py --hours 16 --out data/synth_raw
#   python prepare_librispeech.py --librispeech-dir data/synth_raw --out data/synth30 --window-seconds 30
#   python train.py config/finetune_tiny_en_cpu.py
#   python eval.py --model out-finetune-cpu/best.pt data/synth_raw/test
#
# 30 s windows of consecutive utterances with Whisper's targets (timestamps in half of them, the
# previous text as a prompt in a tenth), so that tiny.en keeps the timestamps and prompts it was
# trained with; fine-tuned on <|notimestamps|> text alone it loses them. The model keeps its 30 s
# window (n_audio_ctx 1500): its positional embedding and everything it learned assume it.
# What it scored before and after, on the synthetic test splits and on real speech: docs/train.md.
out_dir = "out-finetune-cpu"
data_dir = "data/synth30"
init_from = "tiny.en"

batch_size = 4  # a 30 s window is ~1 s of a CPU step each: four keep a step short enough to log often
learning_rate = 1e-5  # small: the model already knows English; this only has to adapt it to espeak's voices
min_lr = 0.0
lr_schedule = "linear"
warmup_iters = 20
max_minutes = 12.0  # the decay follows the clock, as in the quick start
max_iters = 100000
weight_decay = 0.0
dropout = 0.0
dtype = "bfloat16"
timestamp_probability = 0.5
prompt_probability = 0.1

eval_interval = 200
eval_at_start = True  # tiny.en as downloaded, the baseline
eval_iters = 5
eval_wer_utts = 32
eval_sample_len = 224
log_interval = 10
