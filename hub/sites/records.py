"""Read-only records in slots, validated by a pydantic model: one per device in the registry."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import BaseModel, GetCoreSchemaHandler, ValidationError
from pydantic_core import core_schema


class Record:
    """A read-only record in slots, validated by pydantic through a ``_Strict`` model first.

    The registry holds one per device (100,000 in a county): a pydantic instance costs ~750
    bytes more (its ``__dict__`` and fields-set). Same fields, same validation errors (with the
    same ``devices.N.field`` locations) as the model; a record passes validation as it is.
    """

    __slots__ = ()
    _model: ClassVar[type[BaseModel]]
    _names: ClassVar[tuple[str, ...]]

    def __init__(self, **data: Any) -> None:
        self._fill(self._model(**data))

    @classmethod
    def _from_fields(cls, fields: Any) -> Self:
        record = cls.__new__(cls)
        record._fill(fields)
        return record

    def _fill(self, fields: Any) -> None:
        for name in self._names:
            object.__setattr__(self, name, getattr(fields, name))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: cannot delete {name!r}")

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self._names)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(getattr(self, self._names[0]))

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._names
                          if n == self._names[0] or getattr(self, n))
        return f"{type(self).__name__}({shown})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), {n: getattr(self, n) for n in self._names}))

    @classmethod
    def _or_raw(cls, raw: Any) -> Any:
        """A record of ``raw`` if it is valid, else ``raw`` as it is (its errors come later)."""
        try:
            return cls._from_fields(cls._model.model_validate(raw))
        except ValidationError:
            return raw

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        """Validate as the model (a record of this class passes as it is), keep a record."""

        def validate(value: Any, inner: core_schema.ValidatorFunctionWrapHandler) -> Any:
            if isinstance(value, cls):
                return value
            return cls._from_fields(inner(value))

        return core_schema.no_info_wrap_validator_function(
            validate, handler.generate_schema(cls._model)
        )


def _rebuild(cls: type[Record], data: dict[str, Any]) -> Record:
    return cls(**data)

