import pytest

from ttmpd._registry import Registry, UnknownNameError
from ttmpd.errors import InputError


def test_register_bare_and_named_and_lookup():
    reg: Registry[object] = Registry("thing")

    @reg.register
    def alpha():
        return 1

    @reg.register("beta")
    class Beta:
        pass

    assert reg.get("alpha") is alpha
    assert reg.get("beta") is Beta
    assert reg.names() == ["alpha", "beta"]
    assert "alpha" in reg and len(reg) == 2


def test_duplicate_and_unknown_names():
    reg: Registry[object] = Registry("loss")
    reg.register("kd")(object())
    with pytest.raises(ValueError, match="already registered"):
        reg.register("kd")(object())
    with pytest.raises(UnknownNameError) as info:
        reg.get("fitnet")
    assert isinstance(info.value, InputError) and isinstance(info.value, KeyError)
    assert str(info.value) == "unknown loss 'fitnet'; choose one of: kd"
