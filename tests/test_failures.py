"""Train's retry policy: an error that the retry raises again is final; a lost worker is not."""

from __future__ import annotations

from ray.exceptions import ActorDiedError
from ray.train import FailureConfig
from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError
from ray.train.v2.api.exceptions import WorkerGroupError

from clear_ray.runtime.failures import RepeatedErrorPolicy, error_signature

CORRUPT = "Error while deserializing header: invalid JSON in header: EOF at line {line} column 0"


def raised(*errors: Exception) -> WorkerGroupError:
    """A worker group failure whose ranks raised ``errors`` (as Train hands them over)."""
    return WorkerGroupError("workers raised", dict(enumerate(errors)))


def corrupt(line: int = 1) -> WorkerGroupError:
    return raised(OSError(CORRUPT.format(line=line)))


def lost() -> WorkerGroupError:
    return WorkerGroupError("worker died", {0: ActorDiedError()})


def decisions(policy: RepeatedErrorPolicy, errors: list[WorkerGroupError]) -> list[str]:
    return [policy.make_decision(error).value for error in errors]


def test_the_same_error_twice_is_final_at_the_retry() -> None:
    policy = RepeatedErrorPolicy(FailureConfig(max_failures=5))
    assert decisions(policy, [corrupt(), corrupt()]) == ["RETRY", "RAISE"]


def test_numbers_in_the_message_do_not_make_it_another_error() -> None:
    """Train groups its workers' errors with numbers blanked (worker_group/poll.py): so do we."""
    assert error_signature(corrupt(1)) == error_signature(corrupt(7))
    assert error_signature(corrupt(1)) != error_signature(raised(ValueError(CORRUPT)))


def test_a_different_error_is_retried_within_max_failures() -> None:
    policy = RepeatedErrorPolicy(FailureConfig(max_failures=2))
    errors = [raised(OSError("disk full")), corrupt(), raised(KeyError("b"))]
    assert decisions(policy, errors) == ["RETRY", "RETRY", "RAISE"]  # the third is one too many


def test_lost_workers_keep_their_retries() -> None:
    """A worker killed (OOM, lost node) has no error of its own: retried as Train always did."""
    policy = RepeatedErrorPolicy(FailureConfig(max_failures=2))
    assert error_signature(lost()) is None
    missed = WorkerGroupError("health", {0: WorkerHealthCheckFailedError("no answer", None)})
    assert error_signature(missed) is None
    assert error_signature(raised(ValueError("x"), ActorDiedError())) is None
    assert decisions(policy, [lost(), lost(), lost()]) == ["RETRY", "RETRY", "RAISE"]


def test_an_error_after_a_lost_worker_gets_its_retry() -> None:
    policy = RepeatedErrorPolicy(FailureConfig(max_failures=5))
    assert decisions(policy, [corrupt(), lost(), corrupt(), corrupt()]) == [
        "RETRY",
        "RETRY",
        "RETRY",
        "RAISE",
    ]


def test_ranks_that_raised_different_errors_count_as_one_failure_of_both() -> None:
    both = raised(ValueError("a"), ValueError("b"))
    assert error_signature(both) == frozenset({"ValueError: a", "ValueError: b"})
