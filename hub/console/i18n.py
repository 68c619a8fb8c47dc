"""Labels of the duty console in English and Simplified Chinese (every label in both)."""

from __future__ import annotations

from collections.abc import Callable

LANGS: tuple[str, ...] = ("en", "zh-CN")
DEFAULT_LANG = "zh-CN"
COOKIE = "hub_lang"

# key: (English, 简体中文)
LABELS: dict[str, tuple[str, str]] = {
    "title": ("Duty console", "值班台"),
    "product": ("Safety hub", "安全监测中心"),
    "switch_lang": ("中文", "English"),
    "switch_lang_title": ("切换到中文", "Switch to English"),
    "sign_in": ("Sign in", "登录"),
    "sign_out": ("Sign out", "退出"),
    "nav_devices": ("Devices", "设备管理"),
    "devices_title": ("Devices: onboard, edit, retire", "设备管理：接入、修改、退役"),
    "devices_help": ("Changes take effect at once, without a restart: the device's next "
                     "message is tagged with its site. Site files stay valid input; "
                     "changes made here win over them (hub sites export writes them back).",
                     "修改立即生效，无需重启：设备的下一条消息即带上所属乡镇。站点文件仍然有效；"
                     "此处的修改优先（hub sites export 可导出为站点文件）。"),
    "add_device": ("Add a device", "接入设备"),
    "edit_device": ("Edit device", "修改设备"),
    "save": ("Save", "保存"),
    "edit": ("Edit", "修改"),
    "retire": ("Retire", "退役"),
    "confirm_retire": ("Retire this device? Its broker credentials are deleted.",
                       "确定退役该设备？其接入凭据将被删除。"),
    "import_csv": ("Import CSV", "批量导入 CSV"),
    "import_help": ("Header: id,model,site,community,name,lat,lon,place. All rows or none.",
                    "表头：id,model,site,community,name,lat,lon,place。全部成功或全部不导入。"),
    "mqtt_password_once": ("Broker password (shown once, write it into the device):",
                           "设备接入密码（只显示一次，请写入设备）："),
    "admins_only": ("Only admins manage devices.", "仅管理员可管理设备。"),
    "device_id": ("Device id", "设备编号"),
    "device_name": ("Name", "名称"),
    "place": ("Place", "位置类型"),
    "registered_devices": ("Registered devices", "已登记设备"),
    "username": ("User name", "用户名"),
    "password": ("Password", "密码"),
    "login_help": ("Your administrator creates your account (hub users add). Several "
                   "failed attempts lock the name for a few minutes.",
                   "账号由管理员创建（hub users add）。多次输错后该账号将被锁定几分钟。"),
    "err_login": ("Wrong user name or password.", "用户名或密码错误。"),
    "err_locked": ("Too many failed attempts: try again later.", "尝试次数过多，请稍后再试。"),
    "sites_all": ("all sites", "全部乡镇"),
    "live": ("live", "实时"),
    "offline_stream": ("reconnecting…", "正在重连…"),
    "loading": ("Loading…", "加载中…"),
    "nav_alarms": ("Alarms", "告警"),
    "nav_status": ("Status", "状态"),
    "nav_map": ("Map", "地图"),
    "nav_patrol": ("Patrol", "巡查"),
    "nav_stations": ("Fire stations", "微型消防站"),
    "nav_hazards": ("Hazards", "隐患"),
    "active_alarms": ("Active alarms", "当前告警"),
    "no_alarms": ("No open alarms. All quiet.", "暂无未处理告警。"),
    "status_glance": ("Status at a glance", "设备状态总览"),
    "schematic_map": ("Schematic map", "示意图"),
    "patrol_today": ("Patrol: today's rounds", "巡查：今日巡查轮次"),
    "stations_readiness": ("Micro fire stations: readiness", "微型消防站：战备状态"),
    "hazards_board": ("Hazards", "隐患闭环"),
    "kpis": ("KPIs", "考核指标"),
    "alarm": ("Alarm", "告警"),
    "history": ("History", "处置记录"),
    "back": ("Back to the console", "返回值班台"),
    "grafana": ("Grafana", "Grafana 图表"),
    "grafana_unset": ("Set HUB_GRAFANA_URL to link the dashboards.",
                      "设置 HUB_GRAFANA_URL 后可链接到图表。"),
    # actions
    "ack": ("Acknowledge", "确认"),
    "comment": ("Comment", "备注"),
    "clear": ("Clear", "解除"),
    "details": ("Details", "详情"),
    "send": ("Send", "提交"),
    "cancel": ("Cancel", "取消"),
    "note": ("Note", "说明"),
    "department": ("Department", "责任部门"),
    "due_at": ("Due (optional, ISO time)", "整改期限（可选，ISO 时间）"),
    "confirm_clear": ("Clear this alarm by hand? A new breach raises it again.",
                      "确定手动解除该告警？若再次越限将重新告警。"),
    "done": ("Done", "已完成"),
    "acked": ("Acknowledged", "已确认"),
    "commented": ("Comment added", "已添加备注"),
    "cleared": ("Cleared", "已解除"),
    "read_only": ("Read-only: your role cannot act on alarms.", "只读：您的角色不能处置告警。"),
    # columns / facts
    "site": ("Site", "乡镇/街道"),
    "kind": ("Kind", "类型"),
    "device": ("Device", "设备"),
    "devices": ("Devices", "设备数"),
    "total": ("Total", "总数"),
    "online": ("Online", "在线"),
    "offline": ("Offline", "离线"),
    "never_seen": ("Not seen", "未上报"),
    "in_alarm": ("In alarm", "告警中"),
    "severity": ("Severity", "级别"),
    "state": ("State", "状态"),
    "message": ("Message", "内容"),
    "raised": ("Raised", "发生时间"),
    "last_seen": ("Last seen", "最近一次"),
    "count": ("Count", "次数"),
    "value": ("Value", "数值"),
    "rule": ("Rule", "规则"),
    "community": ("Community", "社区/片区"),
    "acked_by": ("Acknowledged by", "确认人"),
    "cleared_by": ("Cleared by", "解除人"),
    "assignee": ("Assignee", "负责人"),
    "time": ("Time", "时间"),
    "action": ("Action", "操作"),
    "actor": ("By", "操作人"),
    "transition": ("State change", "状态变化"),
    "model": ("Model", "型号"),
    # map legend
    "legend_online": ("online", "在线"),
    "legend_offline": ("offline / not seen", "离线/未上报"),
    "legend_alarm": ("in alarm", "告警中"),
    "legend_checkpoint": ("checkpoint", "巡查点"),
    # patrol
    "route": ("Route", "路线"),
    "window": ("Window", "时段"),
    "progress": ("Checkpoints", "巡查点进度"),
    "no_rounds": ("No rounds scheduled today.", "今日无巡查安排。"),
    "on_time": ("on time", "按时"),
    "late": ("late", "迟到"),
    "round_scheduled": ("scheduled", "待开始"),
    "round_in_progress": ("in progress", "进行中"),
    "round_completed": ("completed", "已完成"),
    "round_incomplete": ("incomplete", "未完成"),
    "round_missed": ("missed", "漏巡"),
    "cp_pending": ("pending", "待巡"),
    "cp_scanned": ("scanned", "已巡"),
    "cp_missed": ("missed", "漏巡"),
    # fire stations
    "readiness": ("Readiness", "战备"),
    "ready": ("ready", "完好"),
    "degraded": ("degraded", "需关注"),
    "not_ready": ("not ready", "不可用"),
    "extinguishers": ("Extinguishers", "灭火器"),
    "hydrant": ("Hydrant", "消火栓水压"),
    "mains": ("Mains", "市电"),
    "door": ("Door", "柜门"),
    "battery": ("Battery", "电池"),
    "smoke": ("Smoke", "烟感"),
    "ok": ("ok", "正常"),
    "missing": ("missing", "缺失"),
    "low_pressure": ("low pressure", "压力低"),
    "power_lost": ("lost", "断电"),
    "open": ("open", "打开"),
    "closed": ("closed", "关闭"),
    "no_stations": ("No micro fire stations registered.", "未登记微型消防站。"),
    # hazards
    "hz_reported": ("Reported", "已上报"),
    "hz_dispatched": ("Dispatched", "已交办"),
    "hz_rectified": ("Rectified", "已整改"),
    "hz_verified": ("Verified", "已复核"),
    "hz_reopened": ("Reopened", "已重新打开"),
    "hz_supervised": ("Supervised (督办)", "督办"),
    "supervised": ("督办 supervised", "督办"),
    "grade": ("Grade", "隐患等级"),
    "grade_general": ("general", "一般"),
    "grade_major": ("major", "重大"),
    "all": ("all", "全部"),
    "evidence": ("Add photo", "上传照片"),
    "photo_file": ("Photo or document (JPEG, PNG, WebP, PDF)",
                   "照片或文件（JPEG、PNG、WebP、PDF）"),
    "evidence_kind": ("Evidence of", "照片类型"),
    "ev_before": ("before", "整改前"),
    "ev_after": ("after", "整改后"),
    "rung": ("escalation", "督办进度"),
    "rung_reminder": ("reminder sent", "已提醒"),
    "rung_overdue": ("overdue alarm", "逾期告警"),
    "rung_supervised": ("under supervision", "已督办"),
    "rung_county": ("reported to the county", "已上报县级"),
    "close": ("Close", "关闭"),
    "nav_reports": ("Reports", "报表"),
    "reports_title": ("Hazard reports", "隐患排查治理报表"),
    "reports_help": ("Monthly and quarterly reports in the shape offices submit them: totals, "
                     "by community, department, inspector and route, major hazards with "
                     "photos, the trend against the previous period.",
                     "按上报格式生成月报、季报：总体情况、按社区/部门/巡查员/线路统计、"
                     "重大隐患清单（含整改前后照片）、与上期对比。"),
    "back_to_console": ("← Console", "← 返回值班台"),
    "report_monthly": ("Monthly report", "月报"),
    "report_quarterly": ("Quarterly report", "季报"),
    "month": ("Month", "月份"),
    "quarter": ("Quarter", "季度"),
    "format": ("Format", "格式"),
    "download": ("Download", "下载"),
    "dispatch": ("Dispatch", "交办"),
    "rectify": ("Rectified", "整改完成"),
    "verify": ("Verify", "复核通过"),
    "reopen": ("Reopen", "重新打开"),
    "overdue": ("overdue", "已逾期"),
    "due": ("due", "期限"),
    "reported_by": ("reported by", "上报人"),
    "more": ("more", "更多"),
    "none": ("none", "无"),
    "kpi_registration": ("Registered devices", "设备登记"),
    "kpi_coverage": ("Patrol coverage", "巡查覆盖率"),
    "kpi_on_time": ("On time", "按时率"),
    "kpi_rectification": ("Rectification rate", "整改率"),
    "kpi_verified": ("Verified", "复核率"),
    "kpi_ttr": ("Median time to rectify", "整改用时中位数"),
    "kpi_overdue": ("Overdue", "逾期"),
    "kpi_found": ("Hazards found", "发现隐患"),
    "hours": ("h", "小时"),
    # notifications, duty, silences
    "nav_duty": ("Duty", "值班"),
    "duty_board": ("On duty and notifications", "值班与通知"),
    "notifications": ("Notifications", "通知"),
    "no_notifications": ("No notification for this alarm (no policy matched, or "
                         "HUB_NOTIFY_FILE is not set).",
                         "该告警没有通知（无匹配的通知策略，或未设置 HUB_NOTIFY_FILE）。"),
    "notify_off": ("Notifications are off: set HUB_NOTIFY_FILE (docs/notifications.md).",
                   "通知未开启：请设置 HUB_NOTIFY_FILE（见 docs/notifications.md）。"),
    "step": ("Step", "级别"),
    "channel": ("Channel", "渠道"),
    "status": ("Status", "状态"),
    "error": ("Error", "错误"),
    "ns_sent": ("sent", "已发送"),
    "ns_failed": ("failed", "失败"),
    "ns_suppressed": ("suppressed", "已屏蔽"),
    "ns_pending": ("pending", "待发送"),
    "nk_step": ("step", "升级"),
    "nk_reminder": ("reminder", "提醒"),
    "nk_clear": ("cleared notice", "恢复通知"),
    "silenced": ("silenced", "已静默"),
    "silence": ("Silence", "静默"),
    "silence_title": ("Silence alarms of", "静默告警："),
    "silence_hours": ("Hours", "时长（小时）"),
    "silence_device": ("Silence a device", "静默设备告警"),
    "silence_comment": ("Why", "原因"),
    "silence_default": ("repair crew on site", "维修人员在现场"),
    "silence_done": ("Silenced", "已静默"),
    "silences": ("Silences in force", "生效中的静默"),
    "no_silences": ("No silence in force.", "没有生效中的静默。"),
    "ends": ("ends", "结束"),
    "end_silence": ("End", "结束静默"),
    "silence_ended": ("Silence ended", "静默已结束"),
    "on_duty_now": ("On duty now", "当前值班"),
    "on_duty_next": ("Next", "下一班"),
    "leaders": ("Leaders", "带班领导"),
    "nobody": ("nobody", "无人"),
    "received": ("Messages the stand-in robots received (hub demo)",
                 "本地模拟机器人收到的消息（hub demo）"),
    "standin_note": ("A local stand-in for DingTalk, WeCom, Feishu and SMS: nothing leaves "
                     "this machine.",
                     "钉钉、企业微信、飞书和短信的本地模拟接收端：消息不会离开本机。"),
    "no_received": ("No message yet.", "暂无消息。"),
    # errors / not available
    "not_available": ("Not available on this hub", "本中心暂未提供"),
    "not_available_detail": ("{path} answered 404: this part of the hub is not installed yet.",
                             "{path} 返回 404：该功能尚未安装。"),
    "err_401": ("Not signed in or the session has ended: sign in again.",
                "未登录或登录已过期，请重新登录。"),
    "err_403": ("Not allowed", "无权限"),
    "err_409": ("Conflict", "操作冲突"),
    "err_network": ("The hub does not answer.", "无法连接到中心。"),
    "err_other": ("Error", "错误"),
    "sev_critical": ("critical", "紧急"),
    "sev_major": ("major", "重要"),
    "sev_minor": ("minor", "次要"),
    "sev_warning": ("warning", "警告"),
    "sev_info": ("info", "提示"),
    "st_active_unack": ("active, unacknowledged", "未确认"),
    "st_active_ack": ("active, acknowledged", "已确认"),
    "st_cleared_unack": ("cleared, unacknowledged", "已恢复未确认"),
    "st_cleared_ack": ("closed", "已关闭"),
    "kind_flashing_light": ("Flashing lights", "爆闪灯"),
    "kind_patrol_reader": ("Patrol readers", "巡查终端"),
    "kind_fire_station": ("Micro fire stations", "微型消防站"),
    "act_raise": ("raised", "产生"),
    "act_reopen": ("reopened", "重新告警"),
    "act_escalate": ("escalated", "升级"),
    "act_deescalate": ("de-escalated", "降级"),
    "act_clear": ("cleared", "解除"),
    "act_ack": ("acknowledged", "确认"),
    "act_assign": ("assigned", "指派"),
    "act_comment": ("comment", "备注"),
    "role_viewer": ("viewer", "查看"),
    "role_officer": ("officer", "值班员"),
    "role_admin": ("admin", "管理员"),
}

# Labels the page's script needs (toasts, errors, login).
SCRIPT_KEYS: tuple[str, ...] = (
    "acked", "commented", "cleared", "done", "err_401", "err_403", "err_409", "err_network",
    "err_other", "live", "offline_stream", "confirm_clear", "sign_in", "role_viewer",
    "role_officer", "role_admin", "silence_done", "silence_ended", "err_login", "err_locked",
    "sites_all", "confirm_retire", "mqtt_password_once",
)

HAZARD_CATEGORIES: dict[str, tuple[str, str]] = {
    "fire_exit_blocked": ("Fire exit blocked", "安全出口堵塞"),
    "extinguisher_expired": ("Extinguisher expired / low", "灭火器过期/压力不足"),
    "gas_cylinder_unsafe": ("Gas cylinder unsafe", "液化气钢瓶隐患"),
    "wiring_exposed": ("Exposed wiring", "电线私拉乱接"),
    "ebike_indoor_charging": ("E-bike charging indoors", "电动车室内充电"),
    "combustibles_stacked": ("Combustibles stacked", "可燃杂物堆放"),
    "emergency_light_fault": ("Emergency light fault", "应急照明故障"),
    "illegal_gas_storage": ("Illegal gas storage", "违规储存液化气"),
    "missing_extinguisher": ("Extinguisher missing", "灭火器缺失"),
    "road_hazard": ("Road hazard", "道路安全隐患"),
    "other": ("Other", "其他"),
}


def normalize_lang(value: str | None, accept_language: str | None = None) -> str:
    """Pick ``en`` or ``zh-CN`` from a cookie value, else from Accept-Language."""
    if value in LANGS:
        return value
    if accept_language:
        first = accept_language.split(",")[0].strip().lower()
        if first.startswith("en"):
            return "en"
        if first.startswith("zh"):
            return "zh-CN"
    return DEFAULT_LANG


def translator(lang: str) -> Callable[..., str]:
    """Return ``t(key, **fmt)`` for a language; unknown keys come back as the key."""
    index = 1 if lang == "zh-CN" else 0

    def t(key: str, **fmt: object) -> str:
        pair = LABELS.get(key)
        text = pair[index] if pair else key
        return text.format(**fmt) if fmt else text

    return t


def category_label(category: str | None, lang: str) -> str:
    """Human label of a hazard category (the raw name when unknown)."""
    if not category:
        return "?"
    pair = HAZARD_CATEGORIES.get(category)
    if pair is None:
        return category.replace("_", " ")
    return pair[1] if lang == "zh-CN" else pair[0]
