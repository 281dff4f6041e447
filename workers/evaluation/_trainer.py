"""Training groups of masked heads to the protocol: the per-epoch host path and the fused path."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

import numpy as np
from keras import ops

from evoprune.shared.config import ExperimentConfig
from evoprune.workers.backend import backend_name, compile_function
from evoprune.workers.evaluation import _fused, _head_core
from evoprune.workers.evaluation._early_stopping import EarlyStoppingState, mean_epoch_loss, should_compact
from evoprune.workers.evaluation.head_layout import HeadShape, initial_weights, padded_width
from evoprune.workers.features.feature_set import FeatureSet, Fold


@dataclass
class Trained:
    """One model's final weights, unpadded, and how many epochs it ran."""

    params: list[np.ndarray]
    epochs: int


@dataclass(frozen=True)
class _DeviceFold:
    """One fold's training rows on the device: features with the padding row, one-hot targets."""

    features: object  # (N + 1, D + 1) backend tensor, zeros appended (`extend_features`): padding's targets
    targets: object  # (N + 1, C) backend tensor, the last row zero
    size: int  # N


@dataclass
class _Batch:
    """The models still training, padded to common widths."""

    members: list[int]  # positions in the evaluate() call
    widths: list[int]  # padded width per position
    params: tuple
    momenta: tuple
    best: tuple
    input_indices: object
    states: list[EarlyStoppingState] = field(default_factory=list)


@dataclass
class TrainingRun:
    """One fold's training of a group of models, paused at `epoch` (see HeadTrainer.start/advance)."""

    fold_index: int
    kept: list[list[np.ndarray]]
    batch: _Batch | None  # None once no model is left training
    epoch: int = 0
    stopping: _fused.StoppingTensors | None = None  # the fused path's early-stopping state
    finished: dict[int, Trained] = field(default_factory=dict)  # member → its full-protocol result
    dropped: set[int] = field(default_factory=set)  # members taken out (screened), never collected


class HeadTrainer:
    """Trains groups of masked heads from the shared initial weights on the seeded batch order.

    `epochs_per_call == 1` is the reference path: one compiled call per epoch and early stopping decided on
    the host (`EarlyStoppingState`). Otherwise `_fused.train_epochs` runs that many epochs, early stopping
    included, per call; both give bitwise identical results (tests/workers/evaluation/test_fused.py).
    """

    def __init__(
        self,
        feature_set: FeatureSet,
        config: ExperimentConfig,
        shape: HeadShape,
        spec: _head_core.CoreSpec,
        *,
        xla: bool,
        epochs_per_call: int | None,
    ) -> None:
        """Compiles the training functions and puts each fold's training split on the device.

        Args:
            feature_set: the features (their training splits are used).
            config: the experiment config (its training protocol).
            shape: the resolved head shape.
            spec: the static facts of the numerical core.
            xla: compile with XLA under TensorFlow.
            epochs_per_call: overrides `training.epochs_per_call`; None/0 there = all epochs in one call.
        """
        training = config.training
        self.config = config
        self.shape = shape
        self._spec = spec
        self._initial = initial_weights(shape, training.seed)
        # the Keras 2 decision sums the epoch loss in float64, which JAX computes only in its x64 mode
        x64 = spec.float64_loss
        self._train_epoch = compile_function(partial(_head_core.train_epoch, spec), xla=xla, x64=x64)
        self._select = compile_function(_head_core.select_models)
        stopping = training.early_stopping
        stopping_spec = _fused.StoppingSpec(
            stopping.enabled,
            stopping.min_delta,
            stopping.patience,
            spec.float64_loss,
            keeps_best=stopping.enabled and stopping.restore_best_weights != "never",
            freezes_stopped=stopping.enabled and stopping.restore_best_weights == "never",
        )
        self._train_epochs = compile_function(
            partial(_fused.train_epochs, spec, stopping_spec), xla=xla, x64=x64
        )
        per_call = training.epochs_per_call if epochs_per_call is None else epochs_per_call
        self.epochs_per_call = min(per_call or training.max_epochs, training.max_epochs)
        self._folds = [self._device_fold(fold) for fold in feature_set.folds]

    def _device_fold(self, fold: Fold) -> _DeviceFold:
        train = fold.train
        features = extend_features(train.features)
        targets = np.zeros((len(train) + 1, self.shape.num_classes), dtype=np.float32)
        targets[np.arange(len(train)), train.labels] = 1.0
        return _DeviceFold(ops.convert_to_tensor(features), ops.convert_to_tensor(targets), len(train))

    def padded_widths(self, members: list[int], kept: list[list[np.ndarray]]) -> list[int]:
        """Per position, the width every member of a batch is padded to."""
        return [
            padded_width(max(len(kept[m][position]) for m in members), self._spec.pruned[position])
            for position in range(len(self.shape.widths))
        ]

    def _batch_for(self, members: list[int], kept: list[list[np.ndarray]]) -> _Batch:
        widths = self.padded_widths(members, kept)
        params = tuple(ops.convert_to_tensor(a) for a in self._padded_initial(members, kept, widths))
        momenta = tuple(ops.zeros_like(p) for p in params)
        indices = np.full((len(members), widths[0]), self.shape.widths[0], dtype=np.int32)
        for row, member in enumerate(members):
            indices[row, : len(kept[member][0])] = kept[member][0]
        return _Batch(members, widths, params, momenta, params, ops.convert_to_tensor(indices))

    def _padded_initial(
        self, members: list[int], kept: list[list[np.ndarray]], widths: list[int]
    ) -> list[np.ndarray]:
        sizes = [*widths, self.shape.num_classes]
        layer_count = self.shape.layer_count
        arrays = []
        for layer in range(layer_count):
            stacked = np.zeros((len(members), sizes[layer], sizes[layer + 1]), dtype=np.float32)
            for row, member in enumerate(members):
                rows = kept[member][layer]
                columns = kept[member][layer + 1] if layer + 1 < layer_count else np.arange(sizes[-1])
                stacked[row, : len(rows), : len(columns)] = self._initial[layer][np.ix_(rows, columns)]
            arrays.append(stacked)
        bias_widths = [*widths[1:]] if self.shape.hidden_bias else []
        for width in [*bias_widths, self.shape.num_classes]:
            arrays.append(np.zeros((len(members), width), dtype=np.float32))
        return arrays

    def epoch_order(self, fold_index: int, epoch: int, size: int) -> tuple[np.ndarray, np.ndarray]:
        """The seeded batch sequence of one epoch, the same for every mask."""
        batch_size = self.config.training.batch_size
        generator = np.random.default_rng(
            np.random.SeedSequence([self.config.training.seed, fold_index, epoch, 0xBA7C4])
        )
        permutation = generator.permutation(size)
        batch_count = -(-size // batch_size)
        order = np.full(batch_count * batch_size, size, dtype=np.int32)
        order[:size] = permutation
        weights = np.zeros(batch_count * batch_size, dtype=np.float32)
        weights[:size] = 1.0
        return order.reshape(batch_count, batch_size), weights.reshape(batch_count, batch_size)

    def train(self, fold_index: int, kept: list[list[np.ndarray]]) -> list[Trained]:
        """Trains one model per kept-indices list on one fold, to the protocol.

        Args:
            fold_index: which fold's training split.
            kept: per model, its kept indices at every position.

        Returns:
            Each model's final (or restored best) weights and the epochs it ran, in order.
        """
        run = self.start(fold_index, kept)
        self.advance(run, self.config.training.max_epochs)
        return [run.finished[m] for m in range(len(kept))]

    # -- a training that can pause at an epoch and go on (screening) ----------------------------------

    def start(self, fold_index: int, kept: list[list[np.ndarray]]) -> TrainingRun:
        """Sets up one fold's training of a group of models at epoch 0; `advance` trains it.

        Args:
            fold_index: which fold's training split.
            kept: per model, its kept indices at every position.

        Returns:
            The training, paused before its first epoch.
        """
        batch = self._batch_for(list(range(len(kept))), kept)
        run = TrainingRun(fold_index=fold_index, kept=kept, batch=batch)
        if self.epochs_per_call == 1:
            stopping = self.config.training.early_stopping
            batch.states = [
                EarlyStoppingState(stopping.min_delta, stopping.patience, self._spec.float64_loss)
                for _ in kept
            ]
        else:
            run.stopping = _fused.StoppingTensors.initial(len(kept), self._spec.float64_loss)
        return run

    def advance(self, run: TrainingRun, until: int) -> None:
        """Trains on to epoch `until` (at most max_epochs); models that stop, or end at max_epochs, finish.

        Pausing adds nothing to the arithmetic: every epoch is the same computation whatever calls it is
        split into, so a training advanced to b and then to the end equals one advanced to the end at once
        (tests/workers/evaluation/test_screening_evaluator.py compares them bitwise).

        Args:
            run: from `start`.
            until: the epoch count to reach.
        """
        until = min(until, self.config.training.max_epochs)
        if self.epochs_per_call == 1:
            self._advance_per_epoch(run, until)
        else:
            self._advance_fused(run, until)

    def snapshot(self, run: TrainingRun) -> dict[int, Trained]:
        """What the models still training would give if the protocol's max_epochs were `run.epoch`.

        Args:
            run: a paused training.

        Returns:
            member → weights (best or last, as the restore rule takes them at the last epoch) and epochs.
        """
        batch = run.batch
        if batch is None:
            return {}
        rows = [row for row, member in enumerate(batch.members) if member not in run.finished]
        taken: dict[int, Trained] = {}
        self._collect(batch, rows, run.kept, taken, run.epoch, early_stopped=False)
        return taken

    def drop(self, run: TrainingRun, members: set[int]) -> None:
        """Takes models out of a paused training for good: they leave the computation at once.

        Args:
            run: a paused training.
            members: positions (in `run.kept`) of the models to drop.
        """
        batch = run.batch
        if batch is None or not members:
            return
        run.dropped |= members
        remaining = [
            row
            for row, member in enumerate(batch.members)
            if member not in run.dropped and member not in run.finished
        ]
        if not remaining:
            run.batch = None
            return
        run.batch = self._compact(batch, remaining, run.kept)
        if run.stopping is not None:
            run.stopping = run.stopping.take(np.asarray(remaining, dtype=np.int32))

    def _advance_per_epoch(self, run: TrainingRun, until: int) -> None:
        """The reference path: one compiled call per epoch, early stopping decided on the host."""
        training = self.config.training
        stopping = training.early_stopping
        data = self._folds[run.fold_index]
        size = data.size
        batch_count = -(-size // training.batch_size)
        for epoch in range(run.epoch, until):
            batch = run.batch
            if batch is None:
                break
            order, weights = self.epoch_order(run.fold_index, epoch, size)
            params, momenta, loss_total = self._train_epoch(
                batch.params,
                batch.momenta,
                data.features,
                data.targets,
                ops.convert_to_tensor(order),
                ops.convert_to_tensor(weights),
                batch.input_indices,
                ops.convert_to_tensor(np.int32(epoch * batch_count)),
            )
            batch.params, batch.momenta = params, momenta
            run.epoch = epoch + 1
            totals = np.asarray(ops.convert_to_numpy(loss_total))
            epoch_losses = [mean_epoch_loss(total, size, self._spec.float64_loss) for total in totals]
            improved = np.array(
                [state.observe(loss) for state, loss in zip(batch.states, epoch_losses, strict=True)]
            )
            if improved.any():
                batch.best = self._select(ops.convert_to_tensor(improved), batch.params, batch.best)
            stopped = [
                row for row, state in enumerate(batch.states) if stopping.enabled and state.should_stop(epoch)
            ]
            # models the rule stopped are collected first: Keras 2 restored their best weights even when
            # the rule fired on the last epoch; the rest of the batch ends by running out of epochs
            self._collect(batch, stopped, run.kept, run.finished, epoch + 1, early_stopped=True)
            if epoch == training.max_epochs - 1:
                stopped = list(range(len(batch.members)))
            if stopped:
                self._collect(batch, stopped, run.kept, run.finished, epoch + 1, early_stopped=False)
                remaining = [row for row in range(len(batch.members)) if row not in set(stopped)]
                if not remaining:
                    run.batch = None
                    break
                if should_compact(len(remaining), len(batch.members), _backend_prefers_fixed_shapes()):
                    run.batch = self._compact(batch, remaining, run.kept)
                else:
                    # Stopped models stay in the computation until enough leave; their results are taken.
                    for row in stopped:
                        batch.states[row].retire()

    def _advance_fused(self, run: TrainingRun, until: int) -> None:
        """`epochs_per_call` epochs per compiled call, early stopping on the device (_fused.py)."""
        max_epochs = self.config.training.max_epochs
        data = self._folds[run.fold_index]
        size = data.size
        weights = ops.convert_to_tensor(self.epoch_order(run.fold_index, 0, size)[1])
        while run.batch is not None and run.epoch < until:
            batch = run.batch
            assert run.stopping is not None
            # the call's shape stays (epochs_per_call, ...) whatever `until` is: a pause costs no compile
            orders = _fused.epoch_orders(
                lambda e: self.epoch_order(run.fold_index, e, size)[0], run.epoch, self.epochs_per_call, until
            )
            batch.params, batch.momenta, batch.best, state_tensors = self._train_epochs(
                batch.params,
                batch.momenta,
                batch.best,
                run.stopping.as_tuple(),
                data.features,
                data.targets,
                ops.convert_to_tensor(orders),
                weights,
                batch.input_indices,
                ops.convert_to_tensor(np.float32(size)),
                ops.convert_to_tensor(np.int32(run.epoch)),
                ops.convert_to_tensor(np.int32(until)),
            )
            state = run.stopping = _fused.StoppingTensors(*state_tensors)
            run.epoch = min(run.epoch + self.epochs_per_call, until)
            stopped = np.asarray(ops.convert_to_numpy(state.stopped))
            stop_epochs = np.asarray(ops.convert_to_numpy(state.stop_epoch))
            for stop_epoch in sorted({int(stop_epochs[row]) for row in np.flatnonzero(stopped)}):
                rows = [int(row) for row in np.flatnonzero(stopped & (stop_epochs == stop_epoch))]
                self._collect(batch, rows, run.kept, run.finished, stop_epoch + 1, early_stopped=True)
            remaining = [int(row) for row in np.flatnonzero(~stopped)]
            if run.epoch >= max_epochs:
                self._collect(batch, remaining, run.kept, run.finished, max_epochs, early_stopped=False)
            if run.epoch >= max_epochs or not remaining:
                run.batch = None
                break
            if should_compact(len(remaining), len(batch.members), _backend_prefers_fixed_shapes()):
                run.batch = self._compact(batch, remaining, run.kept)
                run.stopping = state.take(np.asarray(remaining, dtype=np.int32))

    def _collect(
        self,
        batch: _Batch,
        rows: list[int],
        kept: list[list[np.ndarray]],
        finished: dict[int, Trained],
        epochs: int,
        *,
        early_stopped: bool,
    ) -> None:
        if not rows:
            return
        stopping = self.config.training.early_stopping
        restore = stopping.restore_best_weights
        # without early stopping there is no callback to restore anything (as in model.fit)
        use_best = stopping.enabled and (restore == "always" or (restore == "when_stopped" and early_stopped))
        source = batch.best if use_best else batch.params
        arrays = [np.asarray(ops.convert_to_numpy(tensor)) for tensor in source]
        for row in rows:
            member = batch.members[row]
            if member in finished:
                continue
            finished[member] = Trained(unpad(arrays, row, kept[member], self.shape), epochs)

    def _compact(self, batch: _Batch, remaining: list[int], kept: list[list[np.ndarray]]) -> _Batch:
        members = [batch.members[row] for row in remaining]
        widths = self.padded_widths(members, kept)
        sizes = [*widths, self.shape.num_classes]
        rows = np.asarray(remaining, dtype=np.int32)

        def shrink(tensors: tuple) -> tuple:
            out = []
            for index, tensor in enumerate(tensors):
                taken = ops.take(tensor, rows, axis=0)
                if index < self.shape.layer_count:
                    taken = taken[:, : sizes[index], : sizes[index + 1]]
                elif index < len(tensors) - 1:
                    taken = taken[:, : widths[index - self.shape.layer_count + 1]]
                out.append(taken)
            return tuple(out)

        compacted = _Batch(
            members,
            widths,
            shrink(batch.params),
            shrink(batch.momenta),
            shrink(batch.best),
            ops.take(batch.input_indices, rows, axis=0)[:, : widths[0]],
            [batch.states[row] for row in remaining] if batch.states else [],
        )
        return compacted


def extend_features(features: np.ndarray) -> np.ndarray:
    """Features with a zero row and a zero column appended: the targets of padding indices."""
    rows, columns = features.shape
    extended = np.zeros((rows + 1, columns + 1), dtype=np.float32)
    extended[:rows, :columns] = features
    return extended


def unpad(arrays: list[np.ndarray], row: int, kept: list[np.ndarray], shape: HeadShape) -> list[np.ndarray]:
    """One model's weights cut from a padded batch back to its own widths.

    Args:
        arrays: the batch's padded params (leading model axis).
        row: the model's row in the batch.
        kept: its kept indices per position.
        shape: the head shape.

    Returns:
        Its kernels, hidden biases and output bias at their real sizes.
    """
    sizes = [*(len(k) for k in kept), shape.num_classes]
    out = []
    for index, array in enumerate(arrays):
        if index < shape.layer_count:
            out.append(array[row, : sizes[index], : sizes[index + 1]].copy())
        elif index < len(arrays) - 1:
            out.append(array[row, : sizes[index - shape.layer_count + 1]].copy())
        else:
            out.append(array[row].copy())
    return out


def _backend_prefers_fixed_shapes() -> bool:
    return backend_name() == "jax"
