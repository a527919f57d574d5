"""The time limit of `edgekit compress`: shared out among stages, and never overrun by a child process."""

import time

from edgekit.compress.clock import FINISH, GRACE, RESERVE, Clock


def test_the_limit_counts_from_the_commands_start_not_from_when_the_clock_was_made():
    clock = Clock(100, ["onnx:int8"], start=time.monotonic() - 30)
    assert 69 < clock.left() <= 70


def test_a_stage_gets_its_weights_part_of_what_is_left_after_the_reserve():
    clock = Clock(400, ["onnx:int8", "tflite:int8"])  # weights 3 and 4
    assert abs(clock.share("onnx:int8") - (400 - RESERVE) * 3 / 7) < 1
    assert abs(clock.share("tflite:int8") - (400 - RESERVE)) < 1  # the last stage gets all that is left


def test_a_child_gets_its_grace_when_the_limit_is_far():
    clock = Clock(1000, ["prune"])
    assert clock.kill_after(100) == 100 + GRACE


def test_a_child_is_killed_before_the_limit_rather_than_take_the_command_past_it():
    # the last stage: its share is all that is left after the reserve, and its grace would overrun the limit
    clock = Clock(300, ["inc"], start=time.monotonic() - 200)
    seconds = clock.share("inc")
    timeout = clock.kill_after(seconds)
    assert seconds + 10 <= timeout < seconds + GRACE
    assert timeout <= clock.left() - FINISH + 0.1


def test_a_child_is_never_killed_before_its_own_deadline():
    clock = Clock(100, ["inc"], start=time.monotonic() - 99)  # the limit is all but gone
    assert clock.kill_after(20) == 30
