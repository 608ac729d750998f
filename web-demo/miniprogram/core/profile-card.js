// The profile card (资料卡) of the mini-programs: a user's public dating profile as the
// template shows it — photos, age, city, height, education, self-introduction, partner
// preferences (择偶条件), interests and followers — the same fields as the web demo's card.

var format = require('./format');

var GENDER = { female: '女', male: '男', other: '其他' };
var EDUCATION = { high_school: '高中', college: '大专', bachelor: '本科', master: '硕士', doctorate: '博士' };

function photoUrl(p) {
  var url = typeof p === 'string' ? p : p && p.url;
  return typeof url === 'string' && /^https?:\/\//.test(url) ? url : null;
}

/** GET /api/users/{id} → the card's view model; `follow` is GET …/follow (or null). */
function profileCard(u, follow) {
  var age = typeof u.age === 'number' ? u.age : u.birth_year ? new Date().getFullYear() - u.birth_year : null;
  var facts = [
    GENDER[u.gender] || '',
    age ? age + ' 岁' : '',
    u.height_cm ? u.height_cm + 'cm' : '',
    EDUCATION[u.education] || '',
    u.city || '',
  ].filter(Boolean);
  var followers = follow ? follow.followers : u.followers;
  return {
    loading: false,
    id: u.id,
    name: u.nickname,
    initial: format.initial(u.nickname),
    host: u.role === 'host' || u.role === 'admin',
    facts: facts.join(' · '),
    bio: u.bio || '',
    preferences: typeof u.partner_preferences === 'string' ? u.partner_preferences : '',
    photos: (u.photos || []).map(photoUrl).filter(Boolean),
    tags: u.tags || [],
    followers: typeof followers === 'number' ? followers + ' 人关注' : '',
    following: !!(follow && follow.following),
    self: false,
    blocked: false,
  };
}

module.exports = { profileCard: profileCard, EDUCATION: EDUCATION };
