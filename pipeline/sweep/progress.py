"""What a person watching a sweep sees: one line per ended trial and, on a terminal, one bar.

Ray Tune's own reporter prints a status table and every trial's result table (about 45 lines a
trial); a comparison of 16 trials per method printed 1,500 lines of it. This callback replaces
it (``RunConfig(verbose=0)``; ``-v`` brings Tune's back): when a trial ends, one line with its
place in the sweep, its status, its metric and its MLflow run name; on a terminal a bar over
the trials with how many are done, running, stopped and failed, the best so far, the elapsed
time and an estimate of what is left. Where the console is not a terminal there is no bar:
a header, the trial lines (with elapsed and remaining time) and a closing line, plain text.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from ray.tune import Callback
from ray.tune.experiment import Trial

from margin_tune.pipeline.runtime.console import Console, current
from margin_tune.pipeline.sweep.callback import first_line, read_error, trial_status
from margin_tune.trainables.config import Config
from margin_tune.trainables.metric_names import EPOCH

#: How a trial's status is shown, grouped as the bar counts them.
DONE, STOPPED, FAILED = ("completed",), ("early_stopped", "collapsed"), ("failed",)
#: The bar is redrawn at most this often between trial ends (its clock keeps moving).
REFRESH_S = 1.0


def clock(seconds: float) -> str:
    """``0:07``, ``12:34``, ``1:02:03``."""
    whole = int(max(seconds, 0))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class TrialProgress(Callback):
    """One line per ended trial, a bar on a terminal (see the module's docstring).

    ``title`` names the sweep (``dams``, ``dams split 1``, ``re-training``); ``metric`` and
    ``mode`` rank the trials that trained their whole budget (the only ones that can win, as
    :func:`~margin_tune.pipeline.sweep.tuner.best_trial` rules), and a grid without a winner
    passes ``mode=None`` to only show each trial's ``metric``. Tune pickles its callbacks with
    the experiment; this one keeps only plain data and takes the console at :meth:`setup`, so
    ``resume -q`` is quiet even if the first run was not.
    """

    def __init__(
        self,
        title: str,
        total: int,
        resolve_config: Callable[[Mapping[str, Any]], Config],
        metric: str | None = None,
        mode: str | None = None,
    ) -> None:
        self.title = title
        self.total = total
        self.resolve_config = resolve_config
        self.metric = metric
        self.mode = mode
        self._reset()

    def _reset(self) -> None:
        self._console: Console = current()
        self._bar: Any = None
        self._status: dict[str, str] = {}
        self._configs: dict[str, Config] = {}
        self._best: float | None = None
        self._started = time.monotonic()
        self._drawn = 0.0

    def __getstate__(self) -> dict[str, Any]:
        return {
            key: value
            for key, value in self.__dict__.items()
            if key in ("title", "total", "resolve_config", "metric", "mode")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    # Tune's events -----------------------------------------------------------------------

    def setup(
        self,
        stop: Any = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        self._reset()
        if self._console.live:
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                desc=self.title,
                unit="trial",
                file=self._console.out,
                leave=False,
                dynamic_ncols=True,
                # tqdm writes a postfix as ", text": inside the brackets, as its own bars do.
                bar_format="{desc} {bar:16} {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]",
            )
        else:
            self._console.say(f"{self.title}: {self.total} trials")

    def on_step_end(self, iteration: int, trials: list[Trial], **info: Any) -> None:
        if self._bar is not None and time.monotonic() - self._drawn >= REFRESH_S:
            self._draw(trials)

    def on_trial_complete(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        self._ended(trials, trial, error=None)

    def on_trial_error(
        self, iteration: int, trials: list[Trial], trial: Trial, **info: Any
    ) -> None:
        path = getattr(trial, "error_file", None)
        self._ended(trials, trial, error=read_error(path) if path else "no error file")

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._console.say(f"{self.title}: {self.counts(trials)} in {self._elapsed()}")

    # What is shown -------------------------------------------------------------------------

    def _ended(self, trials: list[Trial], trial: Trial, error: str | None) -> None:
        status = self._classify(trial, failed=error is not None)
        last = trial.last_result or {}
        value = last.get(self.metric) if self.metric else None
        # Tune calls this before it marks the trial TERMINATED: count it as ended here.
        ended = len(
            {t.trial_id for t in trials if t.status in (Trial.TERMINATED, Trial.ERROR)}
            | {trial.trial_id}
        )
        width = len(str(self.total))  # ``[ 3/12]``: the columns stay aligned
        parts = [f"[{ended:>{width}}/{self.total}]", f"{status:<13}"]
        if isinstance(value, int | float) and status not in FAILED:
            parts.append(f"{self.metric} {value:.4f}")
        epochs = last.get(EPOCH)
        if epochs is not None:
            parts.append(f"{int(epochs)}/{self._config(trial).train.epochs} epochs")
        parts.append(str(trial))
        line = "  ".join(parts)
        if error is not None:
            line += f": {first_line(error)}"
        if self._bar is None and ended:
            left = self._seconds() / ended * max(self.total - ended, 0)
            line += f"  [{self._elapsed()}, ~{clock(left)} left]"
        self._console.say(line)
        if self._bar is not None:
            self._bar.update(max(ended - self._bar.n, 0))
            self._draw(trials)

    def _draw(self, trials: list[Trial]) -> None:
        self._bar.set_postfix_str(self.counts(trials), refresh=False)
        self._bar.refresh()
        self._drawn = time.monotonic()

    def counts(self, trials: list[Trial]) -> str:
        """``2 done, 2 running, 1 stopped, 0 failed; best val_map_at_r 0.4123``."""
        groups = {"done": 0, "running": 0, "stopped": 0, "failed": 0}
        for trial in trials:
            # A trial whose end was reported counts as ended though Tune may not mark it yet.
            if trial.trial_id in self._status or trial.status in (Trial.TERMINATED, Trial.ERROR):
                status = self._classify(trial, failed=trial.status == Trial.ERROR)
                key = "done" if status in DONE else "failed" if status in FAILED else "stopped"
                groups[key] += 1
            elif trial.status == Trial.RUNNING:
                groups["running"] += 1
        text = ", ".join(f"{count} {name}" for name, count in groups.items())
        if self._best is not None:
            text += f"; best {self.metric} {self._best:.4f}"
        return text

    def _classify(self, trial: Trial, *, failed: bool) -> str:
        """The trial's status, once it ended (cached); a completed one may be the new best."""
        if trial.trial_id not in self._status:
            last = trial.last_result or None
            status = trial_status(self._config(trial), last, failed)
            self._status[trial.trial_id] = status
            value = (last or {}).get(self.metric) if self.metric else None
            if status in DONE and self.mode and isinstance(value, int | float) and value == value:
                better = self._best is None or (
                    value > self._best if self.mode == "max" else value < self._best
                )
                self._best = float(value) if better else self._best
        return self._status[trial.trial_id]

    def _config(self, trial: Trial) -> Config:
        if trial.trial_id not in self._configs:
            self._configs[trial.trial_id] = self.resolve_config(trial.config)
        return self._configs[trial.trial_id]

    def _seconds(self) -> float:
        return time.monotonic() - self._started

    def _elapsed(self) -> str:
        return clock(self._seconds())
