"""RPCSignal, RPCProperty and NoResult on their own, without any socket."""

from __future__ import annotations

import gc
import importlib
import weakref

import pytest

from plantimager.commons.RPC import NoResult, RPCProperty, RPCSignal


@pytest.mark.parametrize(
    ("module", "names"),
    [
        (
            "plantimager.commons.RPC",
            [
                "NoResult",
                "RPCSignal",
                "RPCProperty",
                "RPCClient",
                "RPCServer",
                "RPCEvents",
                "RPCSignalReceiver",
            ],
        ),
        ("plantimager.commons.deviceregistry", ["DeviceRegistry", "register_device", "unregister_device"]),
    ],
)
def test_documented_names_import_from_their_paths(module, names):
    mod = importlib.import_module(module)
    for name in names:
        assert name in mod.__all__
        assert getattr(mod, name).__module__.startswith("plantimager.commons")


def test_noresult_is_falsy_and_keeps_details():
    result = NoResult("boom", "Traceback ...")
    assert not result
    assert result.error == "boom"
    assert result.traceback == "Traceback ..."


class TestSignal:
    def test_emit_calls_connections_in_order_and_ignores_duplicates(self):
        sig = RPCSignal(int)
        calls = []
        first = calls.append

        def second(v):
            calls.append(v * 10)

        sig.connect(first)
        sig.connect(second)
        sig.connect(first)
        sig.emit(2)
        assert calls == [2, 20]

    def test_disconnect_one_and_all(self):
        sig = RPCSignal()
        calls = []

        def a():
            calls.append("a")

        def b():
            calls.append("b")

        sig.connect(a)
        sig.connect(b)
        sig.disconnect(a)
        sig.emit()
        assert calls == ["b"]
        with pytest.raises(ValueError, match="not connected"):
            sig.disconnect(a)
        sig.disconnect()
        sig.emit()
        assert calls == ["b"]

    def test_connect_refuses_non_callables(self):
        with pytest.raises(TypeError, match="not callable"):
            RPCSignal().connect(42)

    def test_weak_method_is_dropped_when_its_object_dies(self):
        class Listener:
            def __init__(self):
                self.seen = []

            def on(self, v):
                self.seen.append(v)

        sig = RPCSignal(int)
        listener = Listener()
        sig.connect(weakref.WeakMethod(listener.on))
        sig.emit(1)
        assert listener.seen == [1]
        del listener
        gc.collect()
        sig.emit(2)  # must not raise
        assert sig.connections == []

    def test_validate_args_checks_arity_and_coerces(self):
        sig = RPCSignal(tuple[int, int], str)
        assert sig.validate_args([1, 2], "x", coerce=True) == ((1, 2), "x")
        with pytest.raises(RuntimeError, match="takes 2 argument"):
            sig.validate_args((1, 2))
        with pytest.raises(TypeError):
            sig.validate_args([1, 2], "x")  # a list is not a tuple without coercion
        with pytest.raises(TypeError):
            sig.validate_args(["a", 2], "x", coerce=True)

    def test_emit_coerces_to_declared_types(self):
        sig = RPCSignal(tuple[int, int])
        seen = []
        sig.connect(seen.append)
        sig.emit([640, 480])
        assert seen == [(640, 480)]

    def test_exceptions_of_handlers_propagate(self):
        sig = RPCSignal()

        def bad():
            raise KeyError("x")

        sig.connect(bad)
        with pytest.raises(KeyError):
            sig.emit()

    def test_signals_are_per_instance_through_any_depth_of_inheritance(self):
        class Base:
            changed = RPCSignal(int)

        class Middle(Base):
            pass

        class Leaf(Middle):
            pass

        a, b = Leaf(), Leaf()
        seen_a, seen_b = [], []
        a.changed.connect(seen_a.append)
        b.changed.connect(seen_b.append)
        a.changed.emit(1)
        assert (seen_a, seen_b) == ([1], [])
        assert a.changed is a.changed
        assert Base.changed.connections == []


class TestProperty:
    def test_decorator_with_notify_keeps_metadata_through_setter(self):
        sig = RPCSignal(int)

        class Device:
            @RPCProperty(notify=sig)
            def value(self) -> int:
                return 1

            @value.setter
            def value(self, v: int) -> None:
                pass

        prop = vars(Device)["value"]
        assert isinstance(prop, RPCProperty)
        assert prop.notify is sig
        assert not prop.readonly
        assert prop.value_type() is int

    def test_auto_notify_emits_only_on_change(self):
        sig = RPCSignal(int)
        seen = []
        sig.connect(seen.append)

        class Device:
            def __init__(self):
                self._v = 0

            @RPCProperty(notify=sig, auto_notify=True)
            def val(self) -> int:
                return self._v

            @val.setter
            def val(self, v: int) -> None:
                self._v = v

        d = Device()
        d.val = 1
        d.val = 1
        d.val = 2
        assert seen == [1, 2]

    def test_auto_notify_uses_the_instance_signal(self):
        class Device:
            levelChanged = RPCSignal(int)

            def __init__(self):
                self._v = 0

            @RPCProperty(notify=levelChanged, auto_notify=True)
            def level(self) -> int:
                return self._v

            @level.setter
            def level(self, v: int) -> None:
                self._v = v

        a, b = Device(), Device()
        seen_a, seen_b = [], []
        a.levelChanged.connect(seen_a.append)
        b.levelChanged.connect(seen_b.append)
        a.level = 5
        assert (seen_a, seen_b) == ([5], [])

    def test_without_auto_notify_the_setter_decides(self):
        sig = RPCSignal(int)
        seen = []
        sig.connect(seen.append)

        class Device:
            @RPCProperty(notify=sig)
            def val(self) -> int:
                return 0

            @val.setter
            def val(self, v: int) -> None:
                pass

        Device().val = 3
        assert seen == []

    def test_bare_decorator_and_readonly(self):
        class Device:
            @RPCProperty
            def name(self) -> str:
                return "n"

        assert Device().name == "n"
        assert vars(Device)["name"].readonly
        with pytest.raises(AttributeError):
            Device().name = "x"
