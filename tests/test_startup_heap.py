import gc
import weakref

import pytest
from wxgate.startup_heap import StartupHeap

pytestmark = pytest.mark.usefixtures("unfrozen")


class Node:
    other: object = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a  # unreachable once returned: only the collector frees it
    return weakref.ref(a)


def test_running_freezes_the_live_startup_heap_but_not_its_garbage():
    garbage = _cycle()
    StartupHeap().running()
    assert gc.get_freeze_count() > 1000
    assert garbage() is None


def test_objects_made_after_running_are_collected_as_before():
    StartupHeap().running()
    later = _cycle()
    gc.collect()
    assert later() is None


def test_a_second_running_in_the_same_process_freezes_nothing_more():
    StartupHeap().running()
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive_then = weakref.ref(a)
    StartupHeap().running()  # a and b are alive here: they must not be frozen
    del a, b
    gc.collect()
    assert alive_then() is None
