"""
Overrides for the hyperparameters at the top of train.py, nanoGPT style:

    python train.py config/synthetic_cpu.py --batch_size=16 --learning_rate=3e-4

A config file is plain Python that assigns some of train.py's globals; `--key=value` arguments
come after it and win. Values are parsed as Python literals (numbers, True/False, None, strings,
tuples); anything that isn't a literal is taken as a string. A key train.py doesn't define, a
value of the wrong type, or one out of the option's range (RULES) is an error that names the file or
argument: a typo must never silently train with the default, nor a wrong value fail hours later.
"""
import ast
import os


class ConfigError(ValueError):
    pass


# the values train.py's options may take: (what the rule says, the test, the options it applies to)
RULES = [
    ("must be at least 1", lambda v: v >= 1, (
        "batch_size gradient_accumulation_steps eval_interval log_interval eval_iters eval_sample_len text_pad_multiple "
        "n_mels n_audio_ctx n_audio_state n_audio_head n_audio_layer n_text_ctx n_text_state n_text_head n_text_layer")),
    ("must not be negative", lambda v: v >= 0, (
        "max_iters warmup_iters lr_decay_iters eval_wer_utts profile_steps profile_skip freq_masks freq_mask_width "
        "time_masks time_mask_width min_lr weight_decay grad_clip ctc_weight guide_weight max_minutes")),
    ("must be positive", lambda v: v > 0, "learning_rate eps guide_sigma"),
    ("must be in [0, 1)", lambda v: 0 <= v < 1, "dropout beta1 beta2"),
    ("expected one of 'cosine', 'linear'", lambda v: v in ("cosine", "linear"), "lr_schedule"),
    ("expected one of 'auto', 'float32', 'bfloat16'", lambda v: v in ("auto", "float32", "bfloat16"), "dtype"),
]


def _check(key, value, config, where):
    if key not in config:
        raise ConfigError(f"{where}: unknown config key '{key}' (known: {', '.join(sorted(config))})")
    default = config[key]
    # None defaults take anything; an int is fine where a float is expected (1e-3 vs 1); bools are
    # strict both ways: True is an int to Python, but --batch_size=True is a mistake, not a 1
    if default is None or value is None:
        return value
    if isinstance(value, type(default)) and isinstance(value, bool) == isinstance(default, bool):
        return value
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    raise ConfigError(f"{where}: '{key}' should be {type(default).__name__}, got {value!r}")


def apply(argv, config: dict) -> list:
    """Apply config files and --key=value args in `argv` to `config` (a dict of defaults, updated
    in place). Returns the list of config files read."""
    files = []
    for arg in argv:
        if not arg.startswith("--"):
            if not os.path.isfile(arg):
                raise ConfigError(f"{arg}: no such config file")
            namespace = {}
            with open(arg) as f:
                source = f.read()
            try:
                exec(compile(source, arg, "exec"), namespace)
            except Exception as e:
                raise ConfigError(f"{arg}: {type(e).__name__}: {e}") from None
            for key, value in namespace.items():
                if key.startswith("_") or type(value).__name__ == "module":
                    continue
                config[key] = _check(key, value, config, arg)
            files.append(arg)
        else:
            key, sep, text = arg[2:].partition("=")
            if not sep:
                raise ConfigError(f"{arg}: expected --key=value")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text  # a bare string: --init_from=tiny.en
            config[key] = _check(key, value, config, arg)
    for rule, ok, keys in RULES:
        for key in keys.split():
            if key in config and not ok(config[key]):
                raise ConfigError(f"{key}={config[key]!r}: {rule}")
    for state, head in (("n_audio_state", "n_audio_head"), ("n_text_state", "n_text_head")):
        if state in config and config[state] % config[head]:
            raise ConfigError(f"{state}={config[state]} is not a multiple of {head}={config[head]}")
    if config.get("pack") and config.get("bucket"):
        raise ConfigError("pack=True and bucket=True are two answers to the same padding; choose one")
    return files
