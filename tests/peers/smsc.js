// An SMSC simulator for the SMS gateway's tests, built on the npm package
// `smpp` (0.5.x) in server mode: the far side of our ESME is someone else's
// SMPP implementation.
//
//   node tests/peers/smsc.js --system-id ID --password PW
//
// Prints one JSON line {"smpp": PORT, "control": PORT} once listening on
// 127.0.0.1 (ports chosen by the OS), then serves until killed.
//
// It accepts bind_transceiver with the right credentials (ESME_RBINDFAIL
// otherwise), answers submit_sm with a fresh message id, and, when the
// submit asked for one (registered_delivery & 1), sends a delivery receipt
// (deliver_sm, esm_class 0x04, "id:… stat:…") after `receipt_delay_ms`.
// Control over HTTP on 127.0.0.1 (JSON):
//   GET  /state    {binds, submits, events, received, max_inflight,
//                  sessions, held}
//                  submits: {seq, source, source_ton, dest, dest_ton,
//                  esm_class, data_coding, registered_delivery, udh (hex),
//                  text (decoded by `smpp`), message_id}
//   POST /mode     merge into the mode: {receipt: "DELIVRD"|"UNDELIV"|…|
//                  "hold"|"none", receipt_delay_ms, resp_delay_ms,
//                  submit_status, nack_submit, stat_for: {number: stat}}
//   POST /mo       {from, to, text, coding: "gsm"|"ucs2"|"detect", parts?: [texts]}
//                  ("detect": no data_coding given, the package's own choice —
//                  GSM 03.38 septets under data_coding 1 for GSM text)
//                  → a deliver_sm (or several, concatenated) to the ESME;
//                  answers {statuses: [command_status…]}
//   POST /release  send the held receipts now (to the session bound now)
//   POST /raw      {hex} bytes written as they are to every session
//   POST /drop     destroy every session's socket (an SMSC that vanishes)
'use strict';

const http = require('http');
const smpp = require('smpp');

const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const SYSTEM_ID = arg('--system-id', 'switchboard');
const PASSWORD = arg('--password', 'secret');

const mode = {
  receipt: 'DELIVRD',
  receipt_delay_ms: 20,
  resp_delay_ms: 0,
  submit_status: 0,
  stat_for: {},
};
const state = { binds: [], submits: [], events: [], received: 0, max_inflight: 0, held: [] };
const sessions = new Set();
let nextId = 1000;

function stamp(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${p(d.getUTCFullYear() % 100)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

function bound() {
  return [...sessions].filter((s) => s.bound && !s.socket.destroyed);
}

function sendReceipt(r) {
  const s = bound()[0];
  if (!s) {
    state.held.push(r);
    return;
  }
  const now = stamp(new Date());
  s.deliver_sm({
    source_addr: r.dest,
    destination_addr: r.source,
    esm_class: 0x04,
    data_coding: 0,
    short_message: `id:${r.message_id} sub:001 dlvrd:${r.stat === 'DELIVRD' ? '001' : '000'} submit date:${now} done date:${now} stat:${r.stat} err:${r.stat === 'DELIVRD' ? '000' : '001'} text:`,
  }, (resp) => {
    state.events.push({ pdu: 'deliver_sm_resp', of: 'receipt', message_id: r.message_id, status: resp.command_status });
    if (resp.command_status !== 0) state.held.push(r);
  });
}

const server = smpp.createServer((session) => {
  sessions.add(session);
  session.inflight = 0;
  session.on('error', (e) => state.events.push({ pdu: 'error', error: String(e && e.message) }));
  session.on('close', () => sessions.delete(session));
  session.on('bind_transceiver', (pdu) => {
    const ok = pdu.system_id === SYSTEM_ID && pdu.password === PASSWORD;
    state.binds.push({ system_id: pdu.system_id, interface_version: pdu.interface_version, ok });
    if (!ok) {
      session.send(pdu.response({ command_status: smpp.ESME_RBINDFAIL }));
      return;
    }
    session.bound = true;
    session.send(pdu.response({ system_id: 'simsc' }));
  });
  session.on('submit_sm', (pdu) => {
    state.received += 1;
    if (mode.nack_submit) {
      session.send(new smpp.PDU('generic_nack', { sequence_number: pdu.sequence_number, command_status: smpp.ESME_RSYSERR }));
      return;
    }
    session.inflight += 1;
    state.max_inflight = Math.max(state.max_inflight, session.inflight);
    const sm = pdu.short_message || {};
    const rec = {
      seq: pdu.sequence_number,
      source: pdu.source_addr,
      source_ton: pdu.source_addr_ton,
      dest: pdu.destination_addr,
      dest_ton: pdu.dest_addr_ton,
      esm_class: pdu.esm_class,
      data_coding: pdu.data_coding,
      registered_delivery: pdu.registered_delivery,
      udh: (sm.udh || []).map((b) => Buffer.from(b).toString('hex')),
      text: typeof sm.message === 'string' ? sm.message : String(sm.message),
    };
    setTimeout(() => {
      session.inflight -= 1;
      if (!session.bound || session.socket.destroyed) return;
      if (mode.submit_status) {
        rec.status = mode.submit_status;
        state.submits.push(rec);
        session.send(pdu.response({ command_status: mode.submit_status }));
        return;
      }
      rec.message_id = `M${nextId++}`;
      state.submits.push(rec);
      session.send(pdu.response({ message_id: rec.message_id }));
      const stat = mode.stat_for[rec.dest] || mode.receipt;
      if ((pdu.registered_delivery & 1) && stat !== 'none') {
        const r = { message_id: rec.message_id, source: rec.source, dest: rec.dest, stat: stat === 'hold' ? 'DELIVRD' : stat };
        if (stat === 'hold') state.held.push(r);
        else setTimeout(() => sendReceipt(r), mode.receipt_delay_ms);
      }
    }, mode.resp_delay_ms);
  });
  session.on('enquire_link', (pdu) => {
    state.events.push({ pdu: 'enquire_link' });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    state.events.push({ pdu: 'unbind' });
    session.send(pdu.response());
    session.bound = false;
  });
  session.on('generic_nack', (pdu) => state.events.push({ pdu: 'generic_nack', seq: pdu.sequence_number, status: pdu.command_status }));
  session.on('unknown', (pdu) => session.send(pdu.response()));
});

function body(req) {
  return new Promise((resolve) => {
    let b = '';
    req.on('data', (c) => { b += c; });
    req.on('end', () => { try { resolve(b ? JSON.parse(b) : {}); } catch (e) { resolve({}); } });
  });
}

function deliver(s, fields) {
  return new Promise((resolve) => {
    s.deliver_sm(fields, (resp) => resolve(resp.command_status));
  });
}

const control = http.createServer(async (req, res) => {
  const reply = (code, obj) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(obj));
  };
  const b = req.method === 'POST' ? await body(req) : {};
  switch (`${req.method} ${req.url}`) {
    case 'GET /state':
      return reply(200, { ...state, sessions: bound().length });
    case 'POST /mode':
      Object.assign(mode, b);
      return reply(200, mode);
    case 'POST /mo': {
      const s = bound()[0];
      if (!s) return reply(409, { error: 'no bound session' });
      const coding = b.coding === 'ucs2' ? 8 : b.coding === 'detect' ? undefined : 0;
      const intl = String(b.from).startsWith('+');
      const base = {
        source_addr: intl ? String(b.from).slice(1) : String(b.from),
        source_addr_ton: intl ? 1 : 0,
        source_addr_npi: 1,
        destination_addr: b.to || 'Switchboard',
      };
      if (coding !== undefined) base.data_coding = coding;
      const parts = b.parts || [b.text];
      const ref = Math.floor(Math.random() * 255);
      const statuses = [];
      for (let i = 0; i < parts.length; i++) {
        const fields = { ...base, short_message: parts[i] };
        if (parts.length > 1) {
          fields.short_message = { udh: Buffer.from([5, 0, 3, ref, parts.length, i + 1]), message: parts[i] };
        }
        statuses.push(await deliver(s, fields));
      }
      return reply(200, { statuses });
    }
    case 'POST /release': {
      const held = state.held.splice(0);
      held.forEach(sendReceipt);
      return reply(200, { released: held.length });
    }
    case 'POST /raw':
      bound().forEach((s) => s.socket.write(Buffer.from(b.hex, 'hex')));
      return reply(200, { sessions: bound().length });
    case 'POST /drop': {
      const n = sessions.size;
      [...sessions].forEach((s) => s.socket.destroy());
      return reply(200, { dropped: n });
    }
    default:
      return reply(404, { error: 'no such control' });
  }
});

server.listen(0, '127.0.0.1', () => {
  control.listen(0, '127.0.0.1', () => {
    console.log(JSON.stringify({ smpp: server.address().port, control: control.address().port }));
  });
});
