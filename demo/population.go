package demo

import (
	"math"
	"math/rand/v2"
	"slices"
	"sort"
)

// category is one item category. Its category_id is its position in
// categories plus one.
type category struct {
	name string
	// share is the relative number of items in the category, and of users
	// whose favourite it is.
	share float64
	// price is the median price of its items; weight their median weight in kg.
	price  float64
	weight float64
}

const numCategories = 8

var categories = [numCategories]category{
	{"electronics", 0.18, 180, 1.2},
	{"fashion", 0.18, 45, 0.6},
	{"home", 0.14, 70, 3.0},
	{"beauty", 0.12, 25, 0.3},
	{"sports", 0.11, 60, 1.5},
	{"books", 0.10, 15, 0.5},
	{"toys", 0.09, 30, 0.8},
	{"grocery", 0.08, 8, 1.0},
}

var (
	countries     = []string{"US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "PL", "BR"}
	countryShares = []float64{0.30, 0.12, 0.12, 0.10, 0.07, 0.07, 0.06, 0.05, 0.05, 0.06}
	devices       = []string{"mobile", "desktop", "tablet"}
	deviceShares  = []float64{0.6, 0.3, 0.1}
)

// hourShares is how activity spreads over the hours of the demo's day (see
// clockHour): quiet at night, a lunch bump and an evening peak.
var hourShares = [24]float64{
	0.45, 0.30, 0.20, 0.15, 0.12, 0.15, 0.25, 0.45, 0.65, 0.75, 0.80, 0.85,
	0.95, 0.90, 0.80, 0.80, 0.85, 0.95, 1.10, 1.30, 1.45, 1.40, 1.10, 0.75,
}

// Key ranges: users are numbered from 1, items from itemIDBase+1, so that a
// user key passed where an item key belongs finds nothing.
const itemIDBase = 1_000_000

// Random streams: every part of the data set draws from its own stream of
// the seed, so that changing one part does not shift the others.
const (
	streamUsers uint64 = iota + 1
	streamItems
	streamSample
	streamTraining
	streamEvents // + the index of the event file
)

// streamImpressions draws the instants of WriteImpressions, apart from
// the event files' streams.
const streamImpressions = 1 << 32

const (
	day    = int64(24 * 60 * 60 * 1000) // in milliseconds
	minute = int64(60 * 1000)
)

// userRow is one row of users.parquet: one version of a user's profile.
type userRow struct {
	UserID            int64   `parquet:"user_id"`
	UpdatedAt         int64   `parquet:"updated_at,timestamp(millisecond)"`
	Age               int64   `parquet:"age"`
	TenureDays        int64   `parquet:"tenure_days"`
	CountryCode       string  `parquet:"country_code,dict"`
	Device            string  `parquet:"device,dict"`
	IsPremium         bool    `parquet:"is_premium"`
	AvgOrderValue     float64 `parquet:"avg_order_value"`
	PriceSensitivity  float32 `parquet:"price_sensitivity"`
	Orders30d         int64   `parquet:"orders_30d"`
	Sessions7d        int64   `parquet:"sessions_7d"`
	Clicks7d          int64   `parquet:"clicks_7d"`
	CTR7d             float32 `parquet:"ctr_7d"`
	AvgSessionMinutes float32 `parquet:"avg_session_minutes"`
	FavoriteCategory  int64   `parquet:"favorite_category_id"`
	PrefElectronics   float32 `parquet:"pref_electronics"`
	PrefFashion       float32 `parquet:"pref_fashion"`
	PrefHome          float32 `parquet:"pref_home"`
	PrefBeauty        float32 `parquet:"pref_beauty"`
	PrefSports        float32 `parquet:"pref_sports"`
	PrefBooks         float32 `parquet:"pref_books"`
	PrefToys          float32 `parquet:"pref_toys"`
	PrefGrocery       float32 `parquet:"pref_grocery"`
}

func (u *userRow) prefs() [numCategories]float32 {
	return [numCategories]float32{u.PrefElectronics, u.PrefFashion, u.PrefHome, u.PrefBeauty,
		u.PrefSports, u.PrefBooks, u.PrefToys, u.PrefGrocery}
}

func (u *userRow) setPrefs(p [numCategories]float32) {
	u.PrefElectronics, u.PrefFashion, u.PrefHome, u.PrefBeauty = p[0], p[1], p[2], p[3]
	u.PrefSports, u.PrefBooks, u.PrefToys, u.PrefGrocery = p[4], p[5], p[6], p[7]
}

// itemRow is one row of items.parquet: one version of an item.
type itemRow struct {
	ItemID       int64     `parquet:"item_id"`
	UpdatedAt    int64     `parquet:"updated_at,timestamp(millisecond)"`
	Category     string    `parquet:"category,dict"`
	CategoryID   int64     `parquet:"category_id"`
	BrandID      int64     `parquet:"brand_id"`
	Price        float64   `parquet:"price"`
	Discount     float32   `parquet:"discount"`
	IsOnSale     bool      `parquet:"is_on_sale"`
	Rating       float32   `parquet:"rating"`
	ReviewCount  int64     `parquet:"review_count"`
	Popularity7d float32   `parquet:"popularity_7d"`
	CTR7d        float32   `parquet:"ctr_7d"`
	Views7d      int64     `parquet:"views_7d"`
	Purchases7d  int64     `parquet:"purchases_7d"`
	Stock        int64     `parquet:"stock"`
	IsNew        bool      `parquet:"is_new"`
	AgeDays      int64     `parquet:"age_days"`
	ReturnRate   float32   `parquet:"return_rate"`
	ShippingDays int64     `parquet:"shipping_days"`
	WeightKg     float32   `parquet:"weight_kg"`
	Embedding    []float32 `parquet:"embedding,list"`
}

// embeddingDim is the length of an item's embedding.
const embeddingDim = 8

// user is the latest version of a user, as the views hold it, and the
// hidden variables of the ground truth.
type user struct {
	row userRow
	// bias is the user's propensity to click anything; ctr_7d shows it.
	bias float64
	// activity is the user's relative share of the events.
	activity float64
	// Derived from row once, for the ground truth.
	logPref  [numCategories]float64 // log(8 * pref): 0 for an average category
	logAOV   float64
	prefCDF  [numCategories]float64
	priceSen float64
}

func (u *user) derive() {
	prefs := u.row.prefs()
	var sum float64
	for c, p := range prefs {
		u.logPref[c] = math.Log(numCategories * float64(p))
		sum += float64(p)
		u.prefCDF[c] = sum
	}
	u.logAOV = math.Log(u.row.AvgOrderValue)
	u.priceSen = float64(u.row.PriceSensitivity)
}

// item is the latest version of an item, as the views hold it, and the
// hidden variables of the ground truth.
type item struct {
	row itemRow
	// quality makes an item clicked more; rating and ctr_7d show it.
	quality float64
	// exposure is the item's relative chance to be shown.
	exposure float64
	// Derived from row once, for the ground truth.
	cat        int
	logPaid    float64 // log of the price after discount
	discount   float64
	popularity float64
}

func (it *item) derive() {
	it.cat = int(it.row.CategoryID - 1)
	it.discount = float64(it.row.Discount)
	it.logPaid = math.Log(it.row.Price * (1 - it.discount))
	it.popularity = float64(it.row.Popularity7d)
}

// population is everything the data set knows before it writes events.
type population struct {
	seed uint64
	now  int64 // Unix milliseconds

	users    []user
	items    []item
	userRows []userRow // in file order
	itemRows []itemRow

	userCDF  []float64 // by activity
	itemCDF  []float64 // by exposure
	catItems [numCategories][]int32
	catCDF   [numCategories][]float64
	hourCDF  []float64
	// hourEffect is the ground truth's term for the hour of day.
	hourEffect [24]float64
}

func newPopulation(seed, now int64, nUsers, nItems int) *population {
	p := &population{seed: uint64(seed), now: now}
	p.buildUsers(nUsers)
	p.buildItems(nItems)

	p.userCDF = make([]float64, len(p.users))
	var sum float64
	for i := range p.users {
		sum += p.users[i].activity
		p.userCDF[i] = sum
	}
	p.itemCDF = make([]float64, len(p.items))
	sum = 0
	for i := range p.items {
		it := &p.items[i]
		sum += it.exposure
		p.itemCDF[i] = sum
		p.catItems[it.cat] = append(p.catItems[it.cat], int32(i))
	}
	for c, idx := range p.catItems {
		cdf := make([]float64, len(idx))
		sum = 0
		for k, i := range idx {
			sum += p.items[i].exposure
			cdf[k] = sum
		}
		p.catCDF[c] = cdf
	}
	p.hourCDF = cumulative(hourShares[:])
	for h := range p.hourEffect {
		p.hourEffect[h] = 0.35 * math.Cos(2*math.Pi*float64(h-20)/24)
	}
	return p
}

func (p *population) buildUsers(n int) {
	rng := rand.New(rand.NewPCG(p.seed, streamUsers))
	shares := categoryShares()
	p.users = make([]user, n)
	p.userRows = make([]userRow, 0, n*3/2)
	for i := range p.users {
		u := &p.users[i]
		fav := pick(rng, shares)
		u.bias = 0.5 * rng.NormFloat64()
		u.activity = math.Exp(0.8 * rng.NormFloat64())
		row := userRow{
			UserID:      int64(i + 1),
			UpdatedAt:   p.now - 1 - rng.Int64N(20*day),
			Age:         int64(clamp(math.Round(38+12*rng.NormFloat64()), 18, 80)),
			TenureDays:  rng.Int64N(2500),
			CountryCode: countries[pick(rng, countryShares)],
			Device:      devices[pick(rng, deviceShares)],
			IsPremium:   rng.Float64() < 0.15,
		}
		aov := 55 * math.Exp(0.6*rng.NormFloat64())
		if row.IsPremium {
			aov *= 1.4
		}
		row.AvgOrderValue = round(aov, 0.01)
		row.PriceSensitivity = float32(round(clamp(0.5-0.25*math.Log(aov/55)+0.2*rng.NormFloat64(), 0, 1), 0.01))
		setActivity(rng, &row, u.bias, u.activity)
		setPrefs(rng, &row, fav)
		u.row = row
		u.derive()

		// Older versions of the profile: the user's tastes and habits drift,
		// and the file lists the versions in no particular order, so only
		// the event time tells which one is current.
		versions := 1
		switch r := rng.Float64(); {
		case r < 0.1:
			versions = 3
		case r < 0.3:
			versions = 2
		}
		first := len(p.userRows)
		p.userRows = append(p.userRows, row)
		t := row.UpdatedAt
		for range versions - 1 {
			t -= 5*day + rng.Int64N(55*day)
			old := row
			old.UpdatedAt = t
			old.TenureDays = max(0, row.TenureDays-(row.UpdatedAt-t)/day)
			old.AvgOrderValue = round(row.AvgOrderValue*math.Exp(0.3*rng.NormFloat64()), 0.01)
			setActivity(rng, &old, u.bias+0.3*rng.NormFloat64(), u.activity*math.Exp(0.4*rng.NormFloat64()))
			oldFav := fav
			if rng.Float64() < 0.4 {
				oldFav = (fav + 1 + rng.IntN(numCategories-1)) % numCategories
			}
			setPrefs(rng, &old, oldFav)
			p.userRows = append(p.userRows, old)
		}
		vs := p.userRows[first:]
		rng.Shuffle(len(vs), func(a, b int) { vs[a], vs[b] = vs[b], vs[a] })
	}
}

// setActivity draws the activity counters of a user profile.
func setActivity(rng *rand.Rand, row *userRow, bias, activity float64) {
	row.Sessions7d = poisson(rng, 3*activity)
	ctr := sigmoid(-2 + bias + 0.1*rng.NormFloat64())
	row.CTR7d = float32(round(ctr, 0.0001))
	row.Clicks7d = poisson(rng, ctr*float64(row.Sessions7d)*8)
	orders := 0.8 * activity
	if row.IsPremium {
		orders *= 1.5
	}
	row.Orders30d = poisson(rng, orders)
	row.AvgSessionMinutes = float32(round(6*math.Exp(0.5*rng.NormFloat64()), 0.1))
}

// setPrefs draws a user's category preferences around a favourite
// category: about 0.4 for the favourite, the rest shared by the others.
func setPrefs(rng *rand.Rand, row *userRow, fav int) {
	var raw [numCategories]float64
	var sum float64
	for c := range raw {
		raw[c] = math.Exp(0.5 * rng.NormFloat64())
		if c == fav {
			raw[c] *= 5
		}
		sum += raw[c]
	}
	var prefs [numCategories]float32
	best := 0
	for c := range raw {
		prefs[c] = float32(max(round(raw[c]/sum, 0.001), 0.001))
		if prefs[c] > prefs[best] {
			best = c
		}
	}
	row.setPrefs(prefs)
	row.FavoriteCategory = int64(best + 1)
}

func (p *population) buildItems(n int) {
	rng := rand.New(rand.NewPCG(p.seed, streamItems))
	shares := categoryShares()
	p.items = make([]item, n)
	for j := range p.items {
		it := &p.items[j]
		c := pick(rng, shares)
		it.quality = 0.5 * rng.NormFloat64()
		it.exposure = math.Exp(rng.NormFloat64())
		row := itemRow{
			ItemID:     int64(itemIDBase + j + 1),
			UpdatedAt:  p.now - 1 - rng.Int64N(20*day),
			Category:   categories[c].name,
			CategoryID: int64(c + 1),
			BrandID:    int64((c+1)*100 + rng.IntN(40)),
			Price:      max(0.99, round(categories[c].price*math.Exp(0.5*rng.NormFloat64()), 0.01)),
			Rating:     float32(round(clamp(3.9+0.8*it.quality+0.15*rng.NormFloat64(), 1, 5), 0.1)),
			AgeDays:    int64(clamp(200*math.Exp(rng.NormFloat64()), 0, 3000)),
		}
		row.Discount = drawDiscount(rng)
		row.IsOnSale = row.Discount > 0
		row.IsNew = row.AgeDays < 30
		row.ReviewCount = int64(it.exposure * math.Sqrt(float64(row.AgeDays+1)) * 3 * math.Exp(0.3*rng.NormFloat64()))
		setSales(rng, &row, it.quality, it.exposure)
		returns := 0.08 - 0.03*it.quality + 0.03*rng.NormFloat64()
		if categories[c].name == "fashion" {
			returns += 0.1
		}
		row.ReturnRate = float32(round(clamp(returns, 0, 0.6), 0.001))
		row.ShippingDays = 1 + poisson(rng, 2)
		row.WeightKg = float32(max(0.01, round(categories[c].weight*math.Exp(0.5*rng.NormFloat64()), 0.01)))
		row.Embedding = embedding(rng, c)
		it.row = row
	}

	// popularity_7d is the item's rank by exposure, from 0 to 1.
	order := make([]int, n)
	for j := range order {
		order[j] = j
	}
	sort.SliceStable(order, func(a, b int) bool { return p.items[order[a]].exposure < p.items[order[b]].exposure })
	for rank, j := range order {
		pop := 0.5
		if n > 1 {
			pop = float64(rank) / float64(n-1)
		}
		p.items[j].row.Popularity7d = float32(round(pop, 0.001))
	}

	p.itemRows = make([]itemRow, 0, n*3/2)
	for j := range p.items {
		it := &p.items[j]
		it.derive()
		row := it.row
		versions := 1
		switch r := rng.Float64(); {
		case r < 0.1:
			versions = 3
		case r < 0.35:
			versions = 2
		}
		first := len(p.itemRows)
		p.itemRows = append(p.itemRows, row)
		t := row.UpdatedAt
		for range versions - 1 {
			t -= 3*day + rng.Int64N(40*day)
			old := row
			old.UpdatedAt = t
			old.AgeDays = max(0, row.AgeDays-(row.UpdatedAt-t)/day)
			old.IsNew = old.AgeDays < 30
			old.Price = max(0.99, round(row.Price*math.Exp(0.1*rng.NormFloat64()), 0.01))
			old.Discount = drawDiscount(rng)
			old.IsOnSale = old.Discount > 0
			old.Popularity7d = float32(round(clamp(float64(row.Popularity7d)+0.1*rng.NormFloat64(), 0, 1), 0.001))
			old.ReviewCount = row.ReviewCount * (old.AgeDays + 1) / (row.AgeDays + 1)
			setSales(rng, &old, it.quality, it.exposure*math.Exp(0.3*rng.NormFloat64()))
			p.itemRows = append(p.itemRows, old)
		}
		vs := p.itemRows[first:]
		rng.Shuffle(len(vs), func(a, b int) { vs[a], vs[b] = vs[b], vs[a] })
	}
}

// setSales draws the sales counters of an item.
func setSales(rng *rand.Rand, row *itemRow, quality, exposure float64) {
	row.Views7d = int64(400 * exposure * math.Exp(0.2*rng.NormFloat64()))
	ctr := sigmoid(-2.2 + quality + 0.15*rng.NormFloat64())
	row.CTR7d = float32(round(ctr, 0.0001))
	row.Purchases7d = poisson(rng, float64(row.Views7d)*ctr*0.1)
	row.Stock = 0
	if rng.Float64() >= 0.04 {
		row.Stock = int64(80 * math.Exp(0.8*rng.NormFloat64()))
	}
}

// drawDiscount returns no discount for about half the items, and 5% to 50%
// in steps of 5% for the others.
func drawDiscount(rng *rand.Rand) float32 {
	if rng.Float64() < 0.55 {
		return 0
	}
	return float32(1+rng.IntN(10)) * 0.05
}

// embedding returns a unit vector near the axis of category c.
func embedding(rng *rand.Rand, c int) []float32 {
	var e [embeddingDim]float64
	var norm float64
	for d := range e {
		e[d] = 0.25 * rng.NormFloat64()
		if d == c%embeddingDim {
			e[d]++
		}
		norm += e[d] * e[d]
	}
	norm = math.Sqrt(norm)
	out := make([]float32, embeddingDim)
	for d := range e {
		out[d] = float32(e[d] / norm)
	}
	return out
}

// logit is the ground truth: the log-odds that user u clicks item it when
// it is shown at the given hour of the demo's day (see clockHour).
func (p *population) logit(u *user, it *item, hour int) float64 {
	z := -2.3 + u.bias + it.quality
	// Category affinity: about +1.4 for the user's favourite category.
	z += 1.2 * u.logPref[it.cat]
	// Price fit: an item far from what the user usually spends is clicked
	// less, the more so for price-sensitive users, who like discounts.
	z -= 0.8 * math.Abs(it.logPaid-u.logAOV) * (0.5 + u.priceSen)
	z += 1.5 * it.discount * u.priceSen
	z += 0.8 * (it.popularity - 0.5)
	z += p.hourEffect[hour]
	if u.row.IsPremium {
		z += 0.2
	}
	return z
}

// sampleUser returns the index of a user, drawn by activity.
func (p *population) sampleUser(rng *rand.Rand) int {
	return searchCDF(p.userCDF, rng.Float64())
}

// sampleItem returns the index of an item shown to u: about a third of the
// time any item, a third a popular one, and a third a popular one of a
// category u likes, as a simple recommender mixes exploration and targeting.
func (p *population) sampleItem(rng *rand.Rand, u *user) int {
	r := rng.Float64()
	switch {
	case r < 0.35:
		return rng.IntN(len(p.items))
	case r < 0.65:
		return searchCDF(p.itemCDF, rng.Float64())
	}
	c := searchCDF(u.prefCDF[:], rng.Float64())
	if len(p.catItems[c]) == 0 {
		return rng.IntN(len(p.items))
	}
	return int(p.catItems[c][searchCDF(p.catCDF[c], rng.Float64())])
}

// sampleHour returns an hour of the day, drawn by activity.
func (p *population) sampleHour(rng *rand.Rand) int {
	return searchCDF(p.hourCDF, rng.Float64())
}

func categoryShares() []float64 {
	s := make([]float64, numCategories)
	for c := range categories {
		s[c] = categories[c].share
	}
	return s
}

// pick returns an index drawn with probability proportional to shares.
func pick(rng *rand.Rand, shares []float64) int {
	var sum float64
	for _, s := range shares {
		sum += s
	}
	r := rng.Float64() * sum
	for i, s := range shares {
		if r < s {
			return i
		}
		r -= s
	}
	return len(shares) - 1
}

func cumulative(w []float64) []float64 {
	out := make([]float64, len(w))
	var sum float64
	for i, x := range w {
		sum += x
		out[i] = sum
	}
	return out
}

// searchCDF returns the index that r (in [0, 1)) selects from a cumulative
// sum of weights.
func searchCDF(cdf []float64, r float64) int {
	x := r * cdf[len(cdf)-1]
	i, _ := slices.BinarySearch(cdf, x)
	// BinarySearch finds the first cdf[i] >= x; an x on a boundary belongs
	// to the next index, and a zero weight is never selected.
	for i < len(cdf)-1 && cdf[i] <= x {
		i++
	}
	return i
}

// poisson draws a Poisson number with the given mean (Knuth's method for
// small means, a rounded normal for large ones).
func poisson(rng *rand.Rand, mean float64) int64 {
	if mean <= 0 {
		return 0
	}
	if mean > 50 {
		return int64(max(0, math.Round(mean+math.Sqrt(mean)*rng.NormFloat64())))
	}
	limit := math.Exp(-mean)
	var k int64
	for prod := rng.Float64(); prod > limit; prod *= rng.Float64() {
		k++
	}
	return k
}

func sigmoid(z float64) float64 { return 1 / (1 + math.Exp(-z)) }

func clamp(x, lo, hi float64) float64 { return min(max(x, lo), hi) }

// round rounds x to a multiple of step, which must divide 1: 0.01, 0.05.
// Dividing by the inverse gives the double nearest the decimal, so that
// values print as 12.34 rather than 12.340000000000002.
func round(x, step float64) float64 {
	inv := math.Round(1 / step)
	return math.Round(x*inv) / inv
}
