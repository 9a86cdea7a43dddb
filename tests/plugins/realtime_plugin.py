"""A plugin using realtime: notify:document pipe, realtime events, subscription and
realtime accessors (tests/test_realtime_api.py)."""


class Plugin:
    def init(self, config, context):
        self.context = context
        self.seen = []

    async def on_document(self, notification):
        if notification["result"]["_source"].get("secret"):
            raise ValueError("not for subscribers")  # a pipe refusing it drops it
        notification["result"]["_source"]["piped"] = True
        return notification

    async def on_user(self, notification):
        notification["piped"] = True
        return notification

    async def on_hook(self, payload, event):
        self.seen.append(event)

    async def subscribe_me(self, request):
        return self.context.accessors.subscription.register(
            request.context.connection.id, "shop", "orders", {"exists": "vip"},
            {"users": "all"})

    def publish_thread(self, request):
        self.context.accessors.realtime.publish("shop", "orders", {"vip": True}, "d-1")
        return True

    def unregister(self, request):
        self.context.accessors.subscription.unregister(request.context.connection.id,
                                                       request.input.body["roomId"])
        return True
