"""Route a topic to the profile message that handles it, and build the subscriptions."""

from __future__ import annotations

from dataclasses import dataclass

from hub.profiles.schema import MessageSpec, Profile

DEVICE_LEVEL = "{device_id}"


@dataclass(frozen=True, slots=True)
class TopicRoute:
    """A topic pattern bound to its profile and message spec."""

    profile: Profile
    message_name: str
    spec: MessageSpec
    id_level: int
    levels: int

    @property
    def subscription(self) -> str:
        """The MQTT topic filter for this pattern ({device_id} becomes +)."""
        return self.spec.topic.replace(DEVICE_LEVEL, "+")


class TopicRouter:
    """Maps concrete topics to routes in O(number of distinct pattern shapes)."""

    def __init__(self, profiles: list[Profile]) -> None:
        self.routes: list[TopicRoute] = []
        self._by_shape: dict[tuple[int, int], dict[tuple[str, ...], TopicRoute]] = {}
        for profile in profiles:
            for name, spec in profile.messages.items():
                levels = spec.topic.split("/")
                id_level = levels.index(DEVICE_LEVEL)
                route = TopicRoute(profile, name, spec, id_level, len(levels))
                key = tuple("" if i == id_level else lv for i, lv in enumerate(levels))
                table = self._by_shape.setdefault((len(levels), id_level), {})
                if key in table:
                    other = table[key]
                    raise ValueError(
                        f"topic {spec.topic!r} of {profile.model} overlaps "
                        f"{other.spec.topic!r} of {other.profile.model}"
                    )
                table[key] = route
                self.routes.append(route)
        # the shapes of each topic length: a topic is only tried against its own length
        self._by_length: dict[int, list[tuple[int, dict[tuple[str, ...], TopicRoute]]]] = {}
        for (length, id_level), table in self._by_shape.items():
            self._by_length.setdefault(length, []).append((id_level, table))

    def match(self, topic: str) -> tuple[TopicRoute, str] | None:
        """Return the route and device id for a topic, or None when no profile handles it."""
        levels = topic.split("/")
        for id_level, table in self._by_length.get(len(levels), ()):
            device_id = levels[id_level]
            levels[id_level] = ""
            route = table.get(tuple(levels))
            levels[id_level] = device_id
            if route is not None and device_id:
                return route, device_id
        return None

    def subscriptions(self, shared_group: str | None = None) -> list[tuple[str, int]]:
        """Return (topic filter, QoS) pairs; QoS 1 for all so nothing is lost to the hub."""
        filters = sorted({route.subscription for route in self.routes})
        prefix = f"$share/{shared_group}/" if shared_group else ""
        return [(prefix + f, 1) for f in filters]
