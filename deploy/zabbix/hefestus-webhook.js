// Hefestus push intake: a Zabbix webhook media type script (Zabbix 6.0+, Duktape, ES5).
//
// Tells Hefestus that a trigger problem was just created, so it is handled now rather
// than at the next poll. The message itself is still written by Hefestus's normal poll
// cycle, and polling keeps running: a push that is lost, refused or arrives twice never
// loses an event nor writes a second message. Recoveries, updates and events that are
// not trigger events are skipped without a request.
//
// A failure throws: Zabbix retries as the media type's "Attempts" say and shows the
// reason in Reports > Action log. The token is never logged nor put into an error.
var MAX_DETAIL = 200;

function fail(message) {
    throw 'Hefestus: ' + message;
}

// "{$HEFESTUS.TOKEN}" left as is: the global macro is not defined.
function isUnresolved(text) {
    return /^\{\$?[A-Z0-9_.]+\}$/.test(text);
}

function endpoint(base) {
    var url = base.trim().replace(/\/+$/, '');

    if (isUnresolved(url) || url === '') {
        fail('hefestus_url is not set: define the global macro {$HEFESTUS.URL} '
            + '(e.g. http://hefestus.example.com:8080) or set the parameter');
    }
    if (!/^https?:\/\/[^\/\s]+/i.test(url)) {
        fail('hefestus_url must start with http:// or https://');
    }
    return /\/api\/zabbix\/events$/.test(url) ? url : url + '/api/zabbix/events';
}

// The "error" sentence of a Hefestus JSON answer, cut short; never the request.
function detail(body) {
    var text = '';

    try {
        var parsed = JSON.parse(body);
        text = (parsed && typeof parsed.error === 'string') ? parsed.error : String(body);
    }
    catch (e) {
        text = String(body || '');
    }
    return text.length > MAX_DETAIL ? text.substring(0, MAX_DETAIL) + '...' : text;
}

var params = JSON.parse(value);

if (params.event_source !== '0') {
    return 'skipped: not a trigger event';
}
if (params.event_value !== '1' || params.event_update_status === '1') {
    return 'skipped: only new problems are pushed';
}
if (!/^[0-9]+$/.test(params.eventid || '')) {
    fail('eventid must be {EVENT.ID}, got "' + String(params.eventid).substring(0, 40) + '"');
}

var url = endpoint(params.hefestus_url || ''),
    token = (params.hefestus_token || '').trim(),
    req = new HttpRequest(),
    response,
    status;

if (isUnresolved(token)) {
    fail('hefestus_token is not set: define the global macro {$HEFESTUS.TOKEN} '
        + '(type Secret text) with Hefestus\'s [api] token, or clear the parameter '
        + 'if Hefestus runs without one');
}
if (typeof params.http_proxy === 'string' && params.http_proxy.trim() !== '') {
    req.setProxy(params.http_proxy.trim());
}
req.addHeader('Content-Type: application/json');
if (token !== '') {
    req.addHeader('Authorization: Bearer ' + token);
}

try {
    response = req.post(url, JSON.stringify({
        eventid: params.eventid,
        event_value: params.event_value,
        trigger_id: params.trigger_id,
        host: params.host,
        severity: params.severity,
        name: params.name
    }));
}
catch (error) {
    fail('cannot reach ' + url + ': ' + error);
}

status = req.getStatus();
Zabbix.log(4, '[Hefestus webhook] event ' + params.eventid + ': HTTP ' + status);

if (status < 200 || status >= 300) {
    fail('HTTP ' + status + ' from ' + url + ' for event ' + params.eventid
        + (status === 401 ? ' (the token does not match Hefestus\'s [api] token)' : '')
        + ': ' + detail(response));
}

return 'OK';
