"""The entry point of every algorithm script: flags from the settings, one parse, one `Config`.

    if __name__ == '__main__':
        cli.main(RealMix)

`--help` lists the algorithm's own settings and the loop's (data, schedule, optimiser, model,
evaluation, inference, speed); `--helpfull` adds absl's and TensorFlow's.
"""

import sys

from libml import config as config_lib
from libml.errors import cli_main
from libml.train import run

from absl import app, flags, logging


def define(algorithm, flag_values=None):
    """Defines `algorithm`'s flags in `flag_values` (the global FLAGS by default) as key flags of the
    main script, so `--help` shows them all."""
    flag_values = flag_values or flags.FLAGS
    config_lib.define_flags(algorithm, flag_values)
    main_module = sys.argv[0]
    names = [s.name for s in config_lib.LOOP] + [s.name for s in algorithm.settings]
    for name in names:
        flag_values.register_key_flag_for_module(main_module, flag_values[name])
    return flag_values


def parse(algorithm, argv):
    """The `Config` of a command line (`argv` without the program name), parsed in a private flag set.

    Lets scripts (the demo, the reproduction tables) know a run's folder and settings without
    running it.
    """
    flag_values = flags.FlagValues()
    config_lib.define_flags(algorithm, flag_values)
    flag_values(['prog'] + list(argv))
    return config_lib.from_flags(algorithm, flag_values)


def main(algorithm):
    """Parses the command line for `algorithm` and trains, evaluates or infers (absl app)."""
    define(algorithm)

    def entry(argv):
        if len(argv) > 1:
            raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
        logging.set_verbosity(logging.WARNING)  # TensorFlow's per-save INFO lines
        config = config_lib.from_flags(algorithm, flags.FLAGS)
        explicit = {name for name in flags.FLAGS if flags.FLAGS[name].present}
        run.dispatch(run.with_settings_of_run(config, explicit), algorithm)

    app.run(cli_main(entry))
