"""
Overrides for the hyperparameters at the top of train.py, nanoGPT style:

    python train.py config/synthetic_cpu.py --batch_size=16 --learning_rate=3e-4

A config file is plain Python that assigns some of train.py's globals; `--key=value` arguments
come after it and win. Values are parsed as Python literals (numbers, True/False, None, strings,
tuples); anything that isn't a literal is taken as a string. A key train.py doesn't define, or a
value of the wrong type, is an error that names the file or argument: a typo must never silently
train with the default.
"""
import ast
import os


class ConfigError(ValueError):
    pass


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
    return files
