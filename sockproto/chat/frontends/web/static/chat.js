// The sockproto chat page.  User text only ever goes into textContent:
// never innerHTML.  See the README for the JSON messages on /ws.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const log = $("log"), status = $("status"), say = $("say"), nickInput = $("nick");
  const whoList = $("who"), roomList = $("rooms"), roomTitle = $("room-title");
  const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
  const maxLines = 1000;
  let socket = null, delay = 500, connected = false, unread = 0;
  let me = { nick: "", room: "" }, people = [];
  const wanted = {
    nick: sessionStorage.getItem("sockproto.nick"),
    room: sessionStorage.getItem("sockproto.room"),
  };

  function colour(nick) {
    let hash = 0;
    for (const c of nick.toLowerCase()) hash = (hash * 31 + c.codePointAt(0)) >>> 0;
    return "hsl(" + (hash % 360) + ", 65%, 35%)";
  }

  function clock(ts) {
    const d = ts ? new Date(ts * 1000) : new Date();
    return d.toTimeString().slice(0, 5);
  }

  function add(kind, parts, ts) {
    const item = document.createElement("li");
    item.className = kind;
    const time = document.createElement("span");
    time.className = "time";
    time.textContent = clock(ts);
    item.append(time);
    for (const part of parts) {
      if (typeof part === "string") {
        item.append(document.createTextNode(part));
      } else {
        const span = document.createElement("span");
        span.className = "nick";
        span.style.color = colour(part.nick);
        span.textContent = part.nick;
        item.append(span);
      }
    }
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(item);
    while (log.children.length > maxLines) log.firstChild.remove();
    if (atBottom) log.scrollTop = log.scrollHeight;
    if (document.hidden && kind !== "notice") {
      unread += 1;
      showTitle();
    }
  }

  function showTitle() {
    const room = me.room ? " #" + me.room : "";
    document.title = (unread ? "(" + unread + ") " : "") + "sockproto chat" + room;
  }

  let roomsSoon = null;
  function refreshRooms() {
    // People come and go: ask for the counts again, at most once a second.
    if (!roomsSoon) roomsSoon = setTimeout(() => { roomsSoon = null; request("rooms"); }, 1000);
  }

  function showEvent(e, ts) {
    const n = { nick: e.nick };
    if (e.type === "join" || e.type === "leave") refreshRooms();
    switch (e.type) {
      case "message": add("line", ["<", n, "> " + e.text], ts); break;
      case "action": add("line action", ["* ", n, " " + e.text], ts); break;
      case "join": add("notice", [n, " joined #" + e.room], ts); people.push(e.nick); break;
      case "leave":
        add("notice", [n, " left #" + e.room + " (" + e.text + ")"], ts);
        people = people.filter((p) => p !== e.nick);
        break;
      case "nick":
        add("notice", [n, " is now known as ", { nick: e.text }], ts);
        people = people.map((p) => (p === e.nick ? e.text : p));
        break;
      case "private": add("private", ["*", n, "* -> *", { nick: e.target }, "* " + e.text], ts); break;
      default: add("notice", [e.text || ""], ts);
    }
  }

  function showPeople() {
    whoList.replaceChildren(...people.map((nick) => {
      const item = document.createElement("li");
      item.textContent = nick;
      item.style.color = colour(nick);
      if (nick === me.nick) item.setAttribute("aria-current", "true");
      return item;
    }));
  }

  function showRooms(rooms) {
    roomList.replaceChildren(...rooms.map((room) => {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "room";
      button.textContent = "#" + room.name + " (" + room.count + ")";
      button.setAttribute("aria-current", String(room.name === me.room));
      button.addEventListener("click", () => send("/join #" + room.name));
      item.append(button);
      return item;
    }));
  }

  function you(m) {
    const roomChanged = m.room !== me.room;
    const first = !me.nick;
    me = { nick: m.nick, room: m.room };
    nickInput.value = m.nick;
    roomTitle.textContent = m.room ? "#" + m.room : "(no room)";
    showTitle();
    if (first && wanted.nick && wanted.nick !== m.nick) send("/nick " + wanted.nick);
    if (first && wanted.room && wanted.room !== m.room) send("/join #" + wanted.room);
    wanted.nick = wanted.room = null;
    sessionStorage.setItem("sockproto.nick", m.nick);
    if (m.room) sessionStorage.setItem("sockproto.room", m.room);
    if (roomChanged) {
      request("who");
      request("rooms");
    }
  }

  const handlers = {
    notice: (m) => add("notice", [m.text]),
    error: (m) => add("error", ["error: " + m.text]),
    history: (m) => {
      if (m.events.length) add("notice", ["last lines of #" + m.room + ":"]);
      for (const e of m.events) showEvent(e);
    },
    who: (m) => { if (m.room === me.room) { people = m.nicks.slice(); showPeople(); } },
    rooms: (m) => showRooms(m.rooms),
    you: you,
  };

  function received(m) {
    const handler = handlers[m.type];
    if (handler) {
      handler(m);
    } else {
      showEvent(m, m.ts);
      if (m.room === me.room) showPeople();
    }
  }

  function request(type, fields) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify(Object.assign({ type: type }, fields || {})));
      return true;
    }
    return false;
  }

  function send(text) {
    if (!request("line", { text: text })) add("error", ["not connected: try again in a moment"]);
  }

  function setStatus(state, text) {
    status.dataset.state = state;
    status.textContent = text;
  }

  function connect() {
    socket = new WebSocket(url);
    socket.addEventListener("open", () => {
      connected = true;
      delay = 500;
      setStatus("connected", "connected");
    });
    socket.addEventListener("message", (event) => {
      let m;
      try { m = JSON.parse(event.data); } catch (e) { return; }
      received(m);
    });
    socket.addEventListener("close", (event) => {
      const wait = delay * (0.5 + Math.random());
      if (connected) add("notice", ["disconnected" + (event.reason ? ": " + event.reason : "")]);
      connected = false;
      wanted.nick = wanted.nick || me.nick || null;
      wanted.room = wanted.room || me.room || null;
      me = { nick: "", room: "" };
      setStatus("reconnecting", "reconnecting in " + Math.ceil(wait / 1000) + " s…");
      setTimeout(connect, wait);
      delay = Math.min(delay * 2, 15000);
    });
  }

  $("say-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = say.value.trim();
    if (text) {
      send(text);
      say.value = "";
    }
  });
  $("nick-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const nick = nickInput.value.trim();
    if (nick && nick !== me.nick) send("/nick " + nick);
  });
  $("join-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const input = $("join");
    const room = input.value.trim().replace(/^#/, "");
    if (room) {
      send("/join #" + room);
      input.value = "";
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      unread = 0;
      showTitle();
    }
  });
  setInterval(() => request("rooms"), 15000);
  connect();
})();
