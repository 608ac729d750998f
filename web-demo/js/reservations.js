// 预约 / 取消预约 of a scheduled show, for every view that offers it (the profile card, the
// offline room's next show): the request, the show's own `reserved` and count updated in
// place, and the toast that says what happened.
import { api, errorText } from './api.js';
import { t } from './i18n.js';
import { toast } from './dom.js';

/** Toggles the reservation of `show` (a GET /api/rooms/{id}/schedule entry). */
export async function toggleReservation(show) {
  try {
    if (show.reserved) await api.unreserve(show.id);
    else await api.reserve(show.id);
    show.reserved = !show.reserved;
    show.reservations = Math.max(0, (show.reservations || 0) + (show.reserved ? 1 : -1));
    toast(t(show.reserved ? 'schedule.reserved' : 'schedule.unreserved'), 'ok');
  } catch (err) { toast(errorText(err), 'error'); }
}
