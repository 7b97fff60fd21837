"""A tuple of arrays that compiled code receives as one pointer.

numba passes a tuple argument by value, flattened into scalars: each array is 7 (1-D) to 11
(3-D) machine words, so the core's machine of some seventy arrays would be about six hundred
arguments copied on every call that is not inlined.  Measured on the overcommit example, that
copying was most of the cost of an event once reference counting was off.

A :class:`View` holds the same arrays and, in one int64 buffer, the words numba's array model
is made of (meminfo, parent, nitems, itemsize, data, shape, strides); a nested tuple becomes a
nested view and is stored as its buffer's address.  Compiled code receives the buffer's
address; ``view.name`` and ``view[i]`` (``i`` a constant) load one field from it.  The meminfo
words are null, so the arrays are borrowed: the :class:`View` keeps them alive, and compiled
code must not keep them beyond the call (the core never does: see :mod:`pfsim.compiled.jit`).

Python keeps using the tuple; when it replaces an array (a grown event heap), it makes a new
view.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from llvmlite import ir
from numba import typeof
from numba.core import cgutils, types
from numba.core.imputils import impl_ret_borrowed, lower_builtin, lower_getattr_generic
from numba.core.typing.templates import AbstractTemplate, AttributeTemplate, infer, infer_getattr, signature
from numba.extending import NativeValue, models, register_model, typeof_impl, unbox


class ViewType(types.Type):
    """The numba type of a :class:`View`: its field names and field types, in order."""

    def __init__(self, fields: tuple[tuple[str, types.Type], ...]):
        self.fields = fields
        self.index = {name: i for i, (name, _) in enumerate(fields)}
        body = ", ".join(f"{name}: {ty}" for name, ty in fields)
        super().__init__(name=f"View({body})")

    @property
    def key(self) -> Any:
        return self.fields


register_model(ViewType)(models.OpaqueModel)


def _words(value: Any) -> tuple[list[int], types.Type]:
    """The words of one field as numba lays them out, and the field's type."""
    if isinstance(value, View):
        return [value.address], value.numba_type
    if isinstance(value, np.ndarray):
        return ([0, 0, value.size, value.itemsize, value.ctypes.data, *value.shape,
                 *value.strides], typeof(value))
    raise TypeError(f"a View holds arrays and tuples of arrays, not {type(value).__name__}")


class View:
    """``tup`` (a namedtuple or tuple of arrays and of such tuples) for compiled code."""

    __slots__ = ("tuple", "children", "words", "address", "numba_type")

    def __init__(self, tup: tuple):
        names = getattr(tup, "_fields", None) or tuple(f"_{i}" for i in range(len(tup)))
        self.tuple = tup
        self.children = [View(v) if isinstance(v, tuple) else v for v in tup]
        words: list[int] = []
        fields = []
        for name, value in zip(names, self.children):
            w, ty = _words(value)
            words.extend(w)
            fields.append((name, ty))
        self.words = np.array(words, dtype=np.uint64).view(np.int64)
        self.address = self.words.ctypes.data
        self.numba_type = ViewType(tuple(fields))


@typeof_impl.register(View)
def _typeof_view(val: View, c: Any) -> ViewType:
    return val.numba_type


@unbox(ViewType)
def _unbox_view(typ: ViewType, obj: Any, c: Any) -> NativeValue:
    address = c.pyapi.object_getattr_string(obj, "address")
    ptr = c.pyapi.long_as_voidptr(address)
    c.pyapi.decref(address)
    is_error = cgutils.is_not_null(c.builder, c.pyapi.err_occurred())
    return NativeValue(ptr, is_error=is_error)


def _load(context: Any, builder: Any, typ: ViewType, val: Any, i: int) -> Any:
    layout = ir.LiteralStructType([context.get_value_type(ty) for _, ty in typ.fields])
    ptr = builder.bitcast(val, layout.as_pointer())
    field = cgutils.gep_inbounds(builder, ptr, 0, i)
    value = builder.load(field)
    return impl_ret_borrowed(context, builder, typ.fields[i][1], value)


@infer_getattr
class _ViewAttributes(AttributeTemplate):
    key = ViewType

    def generic_resolve(self, typ: ViewType, attr: str) -> types.Type | None:
        i = typ.index.get(attr)
        return None if i is None else typ.fields[i][1]


@lower_getattr_generic(ViewType)
def _view_getattr(context: Any, builder: Any, typ: ViewType, val: Any, attr: str) -> Any:
    return _load(context, builder, typ, val, typ.index[attr])


@infer
class _ViewStaticGetItem(AbstractTemplate):
    key = "static_getitem"

    def generic(self, args: tuple, kws: Any) -> Any:
        view, i = args
        if isinstance(view, ViewType) and isinstance(i, int) and 0 <= i < len(view.fields):
            return signature(view.fields[i][1], *args)
        return None


@lower_builtin("static_getitem", ViewType, types.IntegerLiteral)
def _view_static_getitem(context: Any, builder: Any, sig: Any, args: Any) -> Any:
    typ = sig.args[0]
    return _load(context, builder, typ, args[0], args[1])
