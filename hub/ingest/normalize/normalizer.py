"""The normalizer: a message, its profile and the site registry in; a Reading or Refusal out.

Profiles are compiled once into small closures, so the per-message work is a dictionary walk
and a few conversions. Every refusal carries a short reason code (for metrics) and a sentence an
operator can read.
"""

from __future__ import annotations

from prometheus_client import Gauge

from hub.ingest.normalize.context import BaseTags, MessageContext
from hub.ingest.normalize.messages import CompiledMessage
from hub.ingest.normalize.refused import BACKSLASH_END, Refused
from hub.ingest.normalize.text import check_device_id
from hub.ingest.normalize.timestamps import EARLIEST_PLAUSIBLE_NS, MAX_AHEAD_NS
from hub.ingest.router import TopicRoute, TopicRouter
from hub.model import FieldValue, InboundMessage, Point, Reading, Refusal
from hub.profiles.functions import ABSENT
from hub.profiles.schema import Profile
from hub.sites import UNASSIGNED_SITE, SiteRegistry

UNREGISTERED = Gauge("hub_unregistered_devices", "unregistered devices the hub tracks")
MAX_UNREGISTERED = 10_000


class Normalizer:
    """Turns inbound messages into Readings (or Refusals) using profiles and site data."""

    def __init__(
        self, profiles: list[Profile], sites: SiteRegistry, max_payload_bytes: int = 256 * 1024,
        max_unregistered: int = MAX_UNREGISTERED,
    ) -> None:
        self.profiles = {p.model: p for p in profiles}
        self.router = TopicRouter(profiles)
        self.sites = sites
        self.max_payload_bytes = max_payload_bytes
        self.max_unregistered = max_unregistered
        self._compiled: dict[int, CompiledMessage] = {
            id(route): CompiledMessage(route.profile, route.message_name, route.spec)
            for route in self.router.routes
        }
        # unregistered devices' (device_id, model, site) tags; registered devices' model, site
        # and community tags per (model, site, community)
        self._device_tags: dict[str, BaseTags] = {}
        self._group_tags: dict[tuple[str, str, str | None], tuple[BaseTags, BaseTags]] = {}
        self._shared_tags: dict[tuple[str, str], tuple[str, str]] = {}
        # what messages whose values read no context get (most models): one object, not one
        # per message (bench/pipeline_micro.py)
        self._no_context = MessageContext("", UNASSIGNED_SITE, sites, 0, None)

    def process(self, message: InboundMessage) -> Reading | Refusal:
        """Normalize one message; never raises for bad input."""
        try:
            return self._process(message)
        except Refused as exc:
            return self.refusal(message, exc.reason, exc.detail)
        except Exception as exc:  # one bad message never stops the loop
            return self.refusal(message, "internal", f"{type(exc).__name__}: {exc}")

    def refusal(self, message: InboundMessage, reason: str, detail: str) -> Refusal:
        """A refusal of ``message`` with its topic's model and device id where they are known."""
        matched = self.router.match(message.topic)
        return Refusal(
            topic=message.topic,
            received_ns=message.received_ns,
            reason=reason,
            detail=detail,
            head=message.payload[:64],
            device_id=matched[1] if matched else None,
            model=matched[0].profile.model if matched else None,
        )

    def _site_of(self, device_id: str, profile: Profile,
                 admit: bool = False) -> tuple[str, str, BaseTags]:
        """(site, device id, base tags sorted by key: community?, device_id, model, site).

        With ``admit`` (a message from the device) an unregistered device not tracked yet is
        refused once ``max_unregistered`` of them are: garbage ids cannot grow the hub.
        """
        device = self.sites.devices.get(device_id)
        if device is not None:
            # registered: built per message from the registry (no per-device cache: 100,000
            # devices), the model, site and community tags shared; the id string is the
            # registry's, one object per device (memory)
            site = device.site
            group = (profile.model, site.site, device.community if site.tag_community else None)
            shared = self._group_tags.get(group)
            if shared is None:
                shared = self._group_tags[group] = self._base_group(*group)
            before, after = shared
            return site.site, device.id, (*before, ("device_id", device.id), *after)
        cached = self._device_tags.get(device_id)
        if cached is not None:
            return UNASSIGNED_SITE, cached[0][1], cached  # no community: device_id first
        tracked = len(self._device_tags)
        if admit:
            # a new unregistered id (registered ones come from site files, cached ones passed):
            # checked here, once per device, not on every message
            check_device_id(device_id)
        if admit and tracked >= self.max_unregistered:
            raise Refused("unregistered_limit",
                          f"{tracked} unregistered devices are tracked, the limit "
                          f"(HUB_MAX_UNREGISTERED_DEVICES); register {device_id!r} in a site")
        before, after = self._base_group(profile.model, UNASSIGNED_SITE, None)
        tags = (*before, ("device_id", device_id), *after)
        if tracked < 1_000_000:
            self._device_tags[device_id] = tags
            UNREGISTERED.set(tracked + 1)
        return UNASSIGNED_SITE, device_id, tags

    def _base_group(self, model: str, site: str, community: str | None) -> tuple[
            BaseTags, BaseTags]:
        """The shared tags that sort before and after ``device_id``."""
        before: BaseTags = (self._shared_tag("community", community),) if community else ()
        return before, (self._shared_tag("model", model), self._shared_tag("site", site))

    def _shared_tag(self, key: str, value: str) -> tuple[str, str]:
        """One tuple per distinct (key, value) of model, site and community tags."""
        tag = (key, value)
        return self._shared_tags.setdefault(tag, tag)

    def _process(self, message: InboundMessage) -> Reading:
        matched = self.router.match(message.topic)
        if matched is None:
            raise Refused("no_profile", f"no device profile handles topic {message.topic!r}")
        route, device_id = matched
        compiled = self._compiled[id(route)]
        profile = route.profile
        size = len(message.payload)
        if size > self.max_payload_bytes:
            raise Refused("too_large", f"payload of {size} bytes exceeds {self.max_payload_bytes}")
        if size == 0:
            raise Refused("empty", "empty payload (a cleared retained message?)")
        if compiled.id_pattern is not None and not compiled.id_pattern.match(device_id):
            raise Refused("bad_device_id", f"device id {device_id!r} does not fit {profile.model}")
        if device_id[-1] == "\\":
            raise Refused("bad_device_id", f"device id {device_id!r} ends with {BACKSLASH_END}")
        payload = compiled.decode(message.payload)
        site, device_id, base_tags = self._site_of(device_id, profile, True)
        if route.spec.decoder == "status":
            return self._status(message, route, device_id, site, base_tags, payload)
        if compiled.device_id_getter is not None:
            claimed = compiled.device_id_getter(payload, {})
            if claimed is not ABSENT and str(claimed) != device_id:
                raise Refused(
                    "device_mismatch", f"payload says device {claimed!r}, topic says {device_id!r}"
                )
        received = message.received_ns
        device_time = compiled.time(payload)
        extra_fields: list[tuple[str, FieldValue]] = []
        if device_time is not None and (
            device_time < EARLIEST_PLAUSIBLE_NS or device_time > received + MAX_AHEAD_NS
        ):
            extra_fields.append(("device_time_s", device_time / 1e9))
            device_time = None
        time_ns = device_time if device_time is not None else received
        ctx = (MessageContext(device_id, site, self.sites, received, device_time)
               if compiled.uses_context else self._no_context)
        points: list[Point] = []
        values: dict[str, FieldValue] = {}
        for index, point_spec in enumerate(compiled.points):
            for point, fields in point_spec.build(payload, ctx, base_tags, time_ns):
                if index == 0 and not values:
                    values = fields
                    if extra_fields:
                        point = Point(
                            point.measurement,
                            point.tags,
                            point.fields + tuple(extra_fields),
                            point.time_ns,
                        )
                points.append(point)
        if not points:
            raise Refused("no_fields", "the payload has none of the profile's fields")
        if compiled.implies is not None:
            key = values.get(compiled.implies.field)
            implied = compiled.implies.values.get(str(key)) if key is not None else None
            if implied:
                values = {**values, **implied}
        return Reading(
            device_id=device_id,
            model=profile.model,
            kind=profile.kind,
            site=site,
            message=route.message_name,
            time_ns=time_ns,
            received_ns=received,
            points=tuple(points),
            values=values,
        )

    def _status(
        self,
        message: InboundMessage,
        route: TopicRoute,
        device_id: str,
        site: str,
        base_tags: BaseTags,
        text: str,
    ) -> Reading:
        spec = route.spec.status
        online_words = spec.online if spec else ["online"]
        offline_words = spec.offline if spec else ["offline"]
        word = text.lower()
        if word in online_words:
            online, reason = True, "message"
        elif word in offline_words:
            online, reason = False, "lwt"
        else:
            raise Refused("bad_status", f"status {text[:40]!r} is neither online nor offline")
        point = status_point(base_tags, route.profile.kind, online, reason, message.received_ns)
        return Reading(
            device_id=device_id,
            model=route.profile.model,
            kind=route.profile.kind,
            site=site,
            message="status",
            time_ns=message.received_ns,
            received_ns=message.received_ns,
            points=(point,),
            values={"online": online},
            online=online,
            status_reason=reason,
        )

    def base_tags(self, device_id: str, model: str) -> tuple[str, BaseTags]:
        """Return (site, base tags) of a device, for points the hub makes itself."""
        site, _device_id, tags = self._site_of(device_id, self.profiles[model])
        return site, tags


def status_point(
    base_tags: BaseTags, kind: str, online: bool, reason: str, time_ns: int
) -> Point:
    """Build a device_status point."""
    tags = tuple(sorted([*base_tags, ("kind", kind)]))
    return Point("device_status", tags, (("online", online), ("reason", reason)), time_ns)
